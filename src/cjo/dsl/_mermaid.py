"""Draw a Journey as a Mermaid flowchart, with outcomes on the edges."""

from __future__ import annotations

import re
from typing import Any

from cjo.dsl._plan import Plan

_SHAPES = {
    "send": ("[/", "/]"),
    "grant": ("[[", "]]"),
    "risk": ("{{", "}}"),
    "branch": ("{", "}"),
    "split": ("{", "}"),
    "wait": ("([", "])"),
    "wait_for": ("([", "])"),
    "update": ("[", "]"),
    "call": ("[[", "]]"),
    "end": ("((", "))"),
}


def _label(text: str) -> str:
    # Mermaid reads quotes and brackets as syntax; `#quot;` is its escape.
    return '"' + text.replace('"', "#quot;") + '"'


def _node(step_id: str) -> str:
    return "s_" + re.sub(r"[^a-z0-9_]", "_", step_id)


def human_duration(seconds: int) -> str:
    """The largest whole unit: 259200 -> 3d, 5400 -> 90m."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _detail(step_type: str, params: dict[str, Any]) -> str:
    if step_type == "send":
        return f"send {params['channel']}: {params['template']}"
    if step_type == "grant":
        return f"grant {params['benefit']} ×{params['quantity']}"
    if step_type == "risk":
        return f"risk {params['policy']}"
    if step_type == "split":
        return "split " + " / ".join(f"{v['name']} {v['weight']}" for v in params["variants"])
    if step_type == "wait":
        if "duration_seconds" in params:
            return f"wait {human_duration(params['duration_seconds'])}"
        return f"wait until {params.get('until_time') or params.get('until_timestamp')}"
    if step_type == "wait_for":
        return f"wait for {params['event']} ≤ {human_duration(params['timeout_seconds'])}"
    if step_type == "update":
        return "update profile"
    if step_type == "call":
        return f"call {params['activity']}"
    if step_type == "end":
        return "end" + (f": {params['reason']}" if params.get("reason") else "")
    return step_type


def _describe(plan: Plan, step_id: str) -> str:
    step = plan.steps[step_id]
    title = f"<br/>{step.title}" if step.title else ""
    return f"{step_id}<br/>{_detail(step.type, step.params)}{title}"


def mermaid(plan: Plan) -> str:
    """A `flowchart TD` of the plan: entry, every step, and where each outcome goes."""
    trigger = plan.trigger
    entry = f"event {trigger.event}" if trigger.kind == "event" else f"segment {trigger.segment}"
    lines = ["flowchart TD", f"    entry(({_label('enter: ' + entry)}))"]
    for step_id, step in plan.steps.items():
        opening, closing = _SHAPES[step.type]
        lines.append(f"    {_node(step_id)}{opening}{_label(_describe(plan, step_id))}{closing}")
    lines.append(f"    done((({_label('end')})))")
    lines.append(f"    entry --> {_node(plan.start)}")
    for step_id, step in plan.steps.items():
        if step.type == "end":
            lines.append(f"    {_node(step_id)} --> done")
            continue
        cases = step.params.get("cases", [])
        # Outcomes that lead to the same place share one edge, so the chart stays readable.
        labels: dict[str, list[str]] = {}
        for outcome, target in step.routes.items():
            label = outcome
            if step.type == "branch" and outcome.isdigit():
                case = cases[int(outcome)]
                label = case.get("when") or f"in {case.get('segment')}"
            labels.setdefault(target, []).append(label)
        for target, names in labels.items():
            destination = "done" if target == "end" else _node(target)
            lines.append(f"    {_node(step_id)} -->|{_label(' / '.join(names))}| {destination}")
    if plan.goal is not None:
        within = human_duration(plan.goal.within_seconds)
        goal = f"goal: {plan.goal.event} within {within}" + ("" if plan.goal.exit else " (counted)")
        lines.append(f"    goal>{_label(goal)}]")
    return "\n".join(lines) + "\n"
