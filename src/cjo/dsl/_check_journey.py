"""Checks of a Journey beyond its schema: events, expressions, references, templates."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from cjo.dsl._bundle import Bundle, Entry
from cjo.dsl._cel import (
    ROOT_FIELDS,
    check_expression,
    expression_of,
    fields_referenced,
    steps_referenced,
)
from cjo.dsl._check_graph import check_graph
from cjo.dsl._check_resources import locales_without_opt_out, opt_out_pattern, shown_channel
from cjo.dsl._diagnostics import did_you_mean
from cjo.dsl._documents import JourneyDocument
from cjo.dsl._journey import (
    STEP_OUTCOMES,
    BranchStep,
    CallStep,
    GrantStep,
    JourneySpec,
    RiskStep,
    SendStep,
    SplitStep,
    UpdateStep,
    WaitForStep,
)
from cjo.dsl._loader import Document, Path, value_at
from cjo.dsl._templates import check_template, static_problems
from cjo.dsl._types import EVENT_PATTERN
from cjo.runtime.channels import OPT_OUT_CHANNELS

STEPS: Path = ("spec", "steps")


def check_journey(bundle: Bundle, entry: Entry) -> None:
    assert isinstance(entry.model, JourneyDocument)
    spec = entry.model.spec
    doc = entry.source
    step_ids = [step.id for step in spec.steps]
    _check_events(bundle, doc, spec)
    audience = spec.trigger.segment
    if (
        audience is not None
        and spec.trigger.event is None
        and bundle.find("Segment", entry.model.business_line, audience) is None
    ):
        path = ("spec", "trigger", "segment")
        bundle.report_unknown_reference(doc, path, "Segment", entry.model.business_line, audience)
    _check_expressions(bundle, doc, spec, step_ids)
    for index, step in enumerate(spec.steps):
        _check_step_references(bundle, entry, index, step, step_ids)
    check_graph(bundle, doc, spec, outcomes_of(bundle, spec))


def _check_event_name(
    bundle: Bundle, doc: Document, path: Path, name: str | None, what: str
) -> None:
    if not name:
        bundle.report(doc, path, "E240", f"{what} names no event")
    elif not re.match(EVENT_PATTERN, name):
        bundle.report(doc, (*path, "event"), "E110", f"'{name}' is not a valid event name")


def _check_events(bundle: Bundle, doc: Document, spec: JourneySpec) -> None:
    trigger = spec.trigger
    if (trigger.event is None) == (trigger.segment is None):
        which = "both" if trigger.event is not None else "neither"
        bundle.report(
            doc,
            ("spec", "trigger"),
            "E240",
            f"a trigger needs exactly one of 'event' or 'segment'; this one has {which}",
        )
    elif trigger.event is not None:
        _check_event_name(bundle, doc, ("spec", "trigger"), trigger.event, "the trigger")
        if trigger.schedule is not None:
            bundle.report(
                doc,
                ("spec", "trigger", "schedule"),
                "E110",
                "'schedule' runs an audience trigger; an event trigger enters users as events come",
            )
    elif trigger.where is not None:
        bundle.report(
            doc,
            ("spec", "trigger", "where"),
            "E110",
            "'where' filters trigger events; a segment "
            "trigger has none (put the condition in the Segment)",
        )
    if spec.goal is not None:
        _check_event_name(bundle, doc, ("spec", "goal"), spec.goal.event, "the goal")
    for index, rule in enumerate(spec.exit):
        _check_event_name(bundle, doc, ("spec", "exit", index), rule.event, "an exit")


def _expressions(spec: JourneySpec) -> list[tuple[Path, str]]:
    """Every CEL expression in the journey, with its place."""
    found: list[tuple[Path, str]] = []

    def add(path: Path, source: str | None) -> None:
        if source is not None:
            found.append((path, source))

    def add_map(path: Path, values: dict[str, Any] | None) -> None:
        for key, value in (values or {}).items():
            add((*path, key), expression_of(value))

    add(("spec", "trigger", "where"), spec.trigger.where)
    add(("spec", "entry", "key"), spec.entry.key)
    if spec.goal is not None:
        add(("spec", "goal", "where"), spec.goal.where)
    for index, rule in enumerate(spec.exit):
        add(("spec", "exit", index, "where"), rule.where)
    for index, step in enumerate(spec.steps):
        at: Path = (*STEPS, index)
        if isinstance(step, BranchStep):
            for case_index, case in enumerate(step.cases):
                add((*at, "cases", case_index, "when"), case.when)
        elif isinstance(step, WaitForStep):
            add((*at, "where"), step.where)
        elif isinstance(step, SendStep):
            add_map((*at, "vars"), step.vars)
        elif isinstance(step, UpdateStep):
            add_map((*at, "set"), step.set_)
        elif isinstance(step, CallStep):
            add_map((*at, "with"), step.with_)
    return found


def _check_expressions(
    bundle: Bundle, doc: Document, spec: JourneySpec, step_ids: list[str]
) -> None:
    for path, source in _expressions(spec):
        # A `${ expr }` value sits inside the YAML string after "${" and spaces.
        value = doc.source.get(path)
        raw = value_at(doc.data, path)
        base = raw.index(source) if isinstance(raw, str) and value is not None else 0
        for problem in check_expression(source):
            offset = None if problem.offset is None else base + problem.offset
            bundle.report(doc, path, problem.code, problem.message, offset=offset)
        for root, name, offset in fields_referenced(source):
            if name not in ROOT_FIELDS[root]:
                what = "a step" if root == "steps" else root
                hint = did_you_mean(name, sorted(ROOT_FIELDS[root]))
                bundle.report(
                    doc,
                    path,
                    "E211",
                    f"{what} has no field '{name}'{hint}; "
                    f"its fields are {', '.join(sorted(ROOT_FIELDS[root]))}",
                    offset=base + offset,
                )
        for step_id, offset in steps_referenced(source):
            if step_id not in step_ids:
                hint = did_you_mean(step_id, step_ids)
                bundle.report(
                    doc,
                    path,
                    "E201",
                    f"unknown step '{step_id}' in steps.{step_id}{hint}",
                    offset=base + offset,
                )


def outcomes_of(bundle: Bundle, spec: JourneySpec) -> dict[str, tuple[str, ...] | None]:
    """Outcomes per step id; None where unknown (a call to an unregistered activity)."""
    outcomes: dict[str, tuple[str, ...] | None] = {}
    for step in spec.steps:
        if isinstance(step, CallStep):
            declared = bundle.lookup.activity(step.activity)
            outcomes[step.id] = declared.outcomes if declared else None
        elif isinstance(step, BranchStep):
            outcomes[step.id] = (*(str(i) for i in range(len(step.cases))), "default")
        elif isinstance(step, SplitStep):
            outcomes[step.id] = tuple(variant.name for variant in step.variants)
        else:
            outcomes[step.id] = STEP_OUTCOMES[step.type]
    return outcomes


def _check_step_references(
    bundle: Bundle, entry: Entry, index: int, step: Any, step_ids: list[str]
) -> None:
    doc, line = entry.source, entry.model.business_line
    at: Path = (*STEPS, index)
    if isinstance(step, SendStep):
        _check_send(bundle, entry, at, step, step_ids)
    elif isinstance(step, GrantStep):
        if bundle.find("Benefit", line, step.benefit) is None:
            bundle.report_unknown_reference(doc, (*at, "benefit"), "Benefit", line, step.benefit)
    elif isinstance(step, RiskStep):
        if bundle.find("RiskPolicy", line, step.policy) is None:
            bundle.report_unknown_reference(doc, (*at, "policy"), "RiskPolicy", line, step.policy)
    elif isinstance(step, BranchStep):
        for case_index, case in enumerate(step.cases):
            if case.segment is not None and bundle.find("Segment", line, case.segment) is None:
                path = (*at, "cases", case_index, "segment")
                bundle.report_unknown_reference(doc, path, "Segment", line, case.segment)
    elif isinstance(step, SplitStep):
        seen: set[str] = set()
        for variant_index, variant in enumerate(step.variants):
            if variant.name in seen:
                path = (*at, "variants", variant_index, "name")
                bundle.report(doc, path, "E110", f"duplicate variant name '{variant.name}'")
            seen.add(variant.name)
    elif isinstance(step, CallStep):
        _check_call(bundle, doc, at, step)


def _check_call(bundle: Bundle, doc: Document, at: Path, step: CallStep) -> None:
    declared = bundle.lookup.activity(step.activity)
    if declared is None:
        hint = did_you_mean(step.activity, bundle.lookup.activity_names())
        bundle.report(doc, (*at, "activity"), "E220", f"unknown activity '{step.activity}'{hint}")
        return
    try:
        # Literals must already have the declared type: no "3" for 3, no true for 1.
        declared.params.model_validate(step.with_, strict=True)
    except ValidationError as error:
        accepted = [info.alias or name for name, info in declared.params.model_fields.items()]
        for item in error.errors(include_url=False):
            key = str(item["loc"][0]) if item["loc"] else ""
            if (
                key
                and expression_of(step.with_.get(key)) is not None
                and item["type"] != "extra_forbidden"
            ):
                continue  # the value is computed at run time; its type is checked then
            path: Path = (*at, "with", key) if key in step.with_ else (*at, "with")
            if item["type"] == "missing":
                message = f"activity '{step.activity}' needs parameter '{key}'"
            elif item["type"] == "extra_forbidden":
                hint = did_you_mean(key, accepted)
                message = f"activity '{step.activity}' has no parameter '{key}'{hint}"
            else:
                message = f"parameter '{key}' of activity '{step.activity}': {item['msg']}"
            bundle.report(doc, path, "E110", message, at_key=item["type"] == "extra_forbidden")


def _check_send(
    bundle: Bundle, entry: Entry, at: Path, step: SendStep, step_ids: list[str]
) -> None:
    doc, line = entry.source, entry.model.business_line
    targets: list[tuple[Path, str, str]] = [((*at, "template"), step.channel, step.template)]
    targets += [
        ((*at, "fallback", i, "template"), fb.channel, fb.template)
        for i, fb in enumerate(step.fallback)
    ]
    for path, channel, name in targets:
        resolved = bundle.find("Template", line, name)
        if resolved is None:
            bundle.report_unknown_reference(doc, path, "Template", line, name)
            continue
        template = resolved.spec
        if template.channel != channel:
            bundle.report(
                doc,
                path,
                "E232",
                f"template '{name}' is for {template.channel}, but this sends it on {channel}",
            )
        # `steps` holds steps already run, so a send cannot read its own result;
        # `benefit` exists only in journeys that grant one.
        earlier = [step_id for step_id in step_ids if step_id != step.id]
        assert isinstance(entry.model, JourneyDocument)
        has_grant = any(isinstance(s, GrantStep) for s in entry.model.spec.steps)
        for locale, content in template.content.items():
            parts = [("body", content.body), ("subject", content.subject), ("html", content.html)]
            for part, text in parts:
                # A template in this file reports its own syntax errors and misuse of
                # track(), once.
                if text is None or (resolved.source is not None and static_problems(text)):
                    continue
                for problem in check_template(
                    text,
                    step_vars=step.vars or {},
                    step_ids=earlier,
                    journey_name=entry.model.name,
                    has_benefit=has_grant,
                ):
                    where = f" (line {problem.line})" if problem.line else ""
                    hint = (
                        " (this journey has no grant step)"
                        if not has_grant and "benefit" in problem.message
                        else ""
                    )
                    bundle.report(
                        doc,
                        path,
                        "E230",
                        f"template '{name}' {locale} {part} does not render for step "
                        f"'{step.id}'{where}: {problem.message}{hint}",
                    )
        # A marketing template is checked where it is defined; a service template sent
        # as marketing is only wrong here, where the two meet.
        if step.marketing and channel in OPT_OUT_CHANNELS and not template.marketing:
            missing = locales_without_opt_out(template, opt_out_pattern(bundle, line))
            if missing:
                bundle.report(
                    doc,
                    path,
                    "E231",
                    f"this marketing {shown_channel(channel)} uses service template "
                    f"'{name}', whose {', '.join(missing)} text has no opt-out instruction; set "
                    "'marketing: false' on the step or add one",
                )
