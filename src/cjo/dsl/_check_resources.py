"""Checks of Segments, RiskPolicies, Templates and ContactPolicies beyond their schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from cjo.dsl._bundle import Bundle, Entry
from cjo.dsl._cel import check_expression
from cjo.dsl._diagnostics import did_you_mean
from cjo.dsl._documents import (
    ContactPolicyDocument,
    RiskPolicyDocument,
    SegmentDocument,
    TemplateDocument,
)
from cjo.dsl._loader import Path
from cjo.dsl._resources import (
    DATE_OPERATORS,
    DEFAULT_OPT_OUT_PATTERN,
    AllCondition,
    AnyCondition,
    AttrCondition,
    ContactPolicySpec,
    ListCheck,
    NotCondition,
    SegmentCondition,
    TemplateSpec,
    VelocityCheck,
)
from cjo.dsl._templates import link_problems, syntax_problems
from cjo.dsl._types import LIFECYCLE_STAGES
from cjo.runtime.channels import OPT_OUT_CHANNELS

DATE_FIELDS = frozenset({"birthday", "created_at"})
BUILT_IN_FIELDS = frozenset(
    {"id", "name", "phone", "email", "locale", "timezone", "lifecycle", "tags", *DATE_FIELDS}
)


def conditions(condition: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """Every condition in a tree, with its path, parents first."""
    yield path, condition
    if isinstance(condition, AllCondition):
        for index, child in enumerate(condition.all_):
            yield from conditions(child, (*path, "all", index))
    elif isinstance(condition, AnyCondition):
        for index, child in enumerate(condition.any_):
            yield from conditions(child, (*path, "any", index))
    elif isinstance(condition, NotCondition):
        yield from conditions(condition.not_, (*path, "not"))


def segment_references(condition: Any, path: Path) -> list[tuple[Path, str]]:
    return [
        ((*at, "segment"), node.segment)
        for at, node in conditions(condition, path)
        if isinstance(node, SegmentCondition)
    ]


def _check_condition_tree(bundle: Bundle, entry: Entry, condition: Any, path: Path) -> None:
    doc, line = entry.source, entry.model.business_line
    for at, node in conditions(condition, path):
        if isinstance(node, SegmentCondition):
            if bundle.find("Segment", line, node.segment) is None:
                bundle.report_unknown_reference(
                    doc, (*at, "segment"), "Segment", line, node.segment
                )
        elif isinstance(node, AttrCondition):
            _check_attr(bundle, entry, at, node)


def _check_attr(bundle: Bundle, entry: Entry, at: Path, node: AttrCondition) -> None:
    doc = entry.source
    date_operator = next((op for op in DATE_OPERATORS if getattr(node, op) is not None), None)
    if date_operator and node.attr in BUILT_IN_FIELDS - DATE_FIELDS:
        bundle.report(
            doc,
            (*at, date_operator),
            "E110",
            f"'{date_operator}' compares dates, and '{node.attr}' is not a date; "
            f"date fields are {', '.join(sorted(DATE_FIELDS))} and custom attributes",
            at_key=True,
        )
    if node.attr == "lifecycle":
        for op in ("eq", "ne", "in_", "not_in"):
            value = getattr(node, op)
            values = value if isinstance(value, list) else [] if value is None else [value]
            for item in values:
                if item not in LIFECYCLE_STAGES:
                    key = "in" if op == "in_" else op
                    bundle.report(
                        doc,
                        (*at, key),
                        "E110",
                        f"'{item}' is not a lifecycle stage"
                        f"{did_you_mean(str(item), LIFECYCLE_STAGES)}; "
                        f"stages are {', '.join(LIFECYCLE_STAGES)}",
                    )


def check_segment(bundle: Bundle, entry: Entry) -> None:
    assert isinstance(entry.model, SegmentDocument)
    _check_condition_tree(bundle, entry, entry.model.spec.match, ("spec", "match"))
    _check_segment_cycles(bundle, entry)


def _segment_edges(bundle: Bundle, business_line: str, name: str) -> list[str]:
    resolved = bundle.find("Segment", business_line, name)
    if resolved is None:
        return []
    return [ref for _, ref in segment_references(resolved.spec.match, ())]


def _check_segment_cycles(bundle: Bundle, entry: Entry) -> None:
    """A reference closes a cycle when the segment can be reached again through it."""
    line, start = entry.model.business_line, entry.model.name
    assert isinstance(entry.model, SegmentDocument)
    for path, first in segment_references(entry.model.spec.match, ("spec", "match")):
        trail = _path_back(bundle, line, first, start)
        if trail is not None:
            loop = " → ".join([start, *trail])
            bundle.report(entry.source, path, "E221", f"segment references form a cycle: {loop}")


def _path_back(bundle: Bundle, business_line: str, begin: str, target: str) -> list[str] | None:
    parents: dict[str, str | None] = {begin: None}
    frontier = [begin]
    while frontier:
        current = frontier.pop(0)
        if current == target:
            trail = [current]
            while parents[trail[-1]] is not None:
                trail.append(parents[trail[-1]] or "")
            return list(reversed(trail))
        for child in _segment_edges(bundle, business_line, current):
            if child not in parents:
                parents[child] = current
                frontier.append(child)
    return None


def check_risk_policy(bundle: Bundle, entry: Entry) -> None:
    assert isinstance(entry.model, RiskPolicyDocument)
    seen: set[str] = set()
    for index, rule in enumerate(entry.model.spec.rules):
        at: Path = ("spec", "rules", index)
        if rule.id in seen:
            bundle.report(entry.source, (*at, "id"), "E110", f"duplicate rule id '{rule.id}'")
        seen.add(rule.id)
        check = rule.if_
        if isinstance(check, ListCheck):
            for problem in check_expression(check.key):
                bundle.report(
                    entry.source,
                    (*at, "if", "key"),
                    problem.code,
                    problem.message,
                    offset=problem.offset,
                )
        elif not isinstance(check, VelocityCheck):
            _check_condition_tree(bundle, entry, check, (*at, "if"))


def opt_out_pattern(bundle: Bundle, business_line: str) -> str:
    policy = bundle.find("ContactPolicy", business_line, "default")
    if policy is not None and isinstance(policy.spec, ContactPolicySpec):
        return policy.spec.opt_out_pattern
    return DEFAULT_OPT_OUT_PATTERN


def locales_without_opt_out(template: TemplateSpec, pattern: str) -> list[str]:
    return [
        locale
        for locale, content in template.content.items()
        if not re.search(pattern, content.body, re.IGNORECASE)
    ]


def check_template_document(bundle: Bundle, entry: Entry) -> None:
    assert isinstance(entry.model, TemplateDocument)
    spec = entry.model.spec
    for locale, content in spec.content.items():
        for part in ("subject", "body", "html"):
            text = getattr(content, part)
            if text is None:
                continue
            for problem in syntax_problems(text):
                where = f" (line {problem.line})" if problem.line else ""
                bundle.report(
                    entry.source,
                    ("spec", "content", locale, part),
                    "E230",
                    f"template {locale} {part} does not parse{where}: {problem.message}",
                )
            for problem in link_problems(text):
                where = f" (line {problem.line})" if problem.line else ""
                bundle.report(
                    entry.source,
                    ("spec", "content", locale, part),
                    "E230",
                    f"template {locale} {part} has an untrackable link{where}: {problem.message}",
                )
    if spec.channel in OPT_OUT_CHANNELS and spec.marketing:
        pattern = opt_out_pattern(bundle, entry.model.business_line)
        for locale in locales_without_opt_out(spec, pattern):
            bundle.report(
                entry.source,
                ("spec", "content", locale, "body"),
                "E231",
                f"marketing {shown_channel(spec.channel)} ({locale}) has no opt-out instruction "
                f"matching '{pattern}'",
            )


def check_contact_policy(bundle: Bundle, entry: Entry) -> None:
    assert isinstance(entry.model, ContactPolicyDocument)
    if entry.model.name != "default":
        bundle.report(
            entry.source,
            ("metadata", "name"),
            "E110",
            "a business line has one ContactPolicy and it is named 'default'",
        )


def shown_channel(channel: str) -> str:
    """A channel as a message names it: "SMS", else its name."""
    return "SMS" if channel == "sms" else f"'{channel}' message"
