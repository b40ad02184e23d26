"""Draw a Journey as a Mermaid flowchart, with outcomes on the edges."""

from __future__ import annotations

import re
from collections.abc import Callable

from cjo.dsl._journey import STEP_OUTCOMES
from cjo.dsl._types import human_duration
from cjo.dsl.plan import (
    BranchPlanStep,
    CallPlanStep,
    EndPlanStep,
    GrantPlanStep,
    Plan,
    PlanStep,
    RiskPlanStep,
    SendPlanStep,
    SplitPlanStep,
    UpdatePlanStep,
    WaitDuration,
    WaitForPlanStep,
    WaitPlanStep,
    WaitUntilTime,
    WaitUntilTimestamp,
    WhenCase,
)

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
    # Mermaid reads quotes and angle brackets as syntax; `#quot;` and `#lt;` are its escapes.
    # Our own line breaks (<br/>) are put back.
    escaped = text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return '"' + escaped.replace("#lt;br/#gt;", "<br/>") + '"'


def _node(step_id: str) -> str:
    return "s_" + re.sub(r"[^a-z0-9_]", "_", step_id)


def _detail(step: PlanStep) -> str:
    match step:
        case SendPlanStep(params=send):
            fallback = "".join(f"<br/>else {f.channel}: {f.template}" for f in send.fallback)
            return f"send {send.channel}: {send.template}{fallback}"
        case GrantPlanStep(params=grant):
            return f"grant {grant.benefit} ×{grant.quantity}"
        case RiskPlanStep(params=risk):
            return f"risk {risk.policy}"
        case SplitPlanStep(params=split):
            return "split " + " / ".join(f"{v.name} {v.weight}" for v in split.variants)
        case WaitPlanStep(params=WaitDuration(duration_seconds=seconds)):
            return f"wait {human_duration(seconds)}"
        case WaitPlanStep(params=WaitUntilTime(until_time=moment)):
            return f"wait until {moment}"
        case WaitPlanStep(params=WaitUntilTimestamp(until_timestamp=moment)):
            return f"wait until {moment}"
        case WaitForPlanStep(params=awaited):
            return f"wait for {awaited.event} ≤ {human_duration(awaited.timeout_seconds)}"
        case UpdatePlanStep():
            return "update profile"
        case CallPlanStep(params=call):
            return f"call {call.activity}"
        case EndPlanStep(params=end):
            return "end" + (f": {end.reason}" if end.reason else "")
    return step.type


def _outcome_order(step: PlanStep) -> Callable[[tuple[str, str]], tuple[int, str]]:
    """Outcomes in the order people think of them (sent before suppressed), not A-Z."""
    if isinstance(step, SplitPlanStep):
        known = [variant.name for variant in step.params.variants]
    elif isinstance(step, BranchPlanStep):
        known = [str(i) for i in range(len(step.params.cases))] + ["default"]
    else:
        known = list(STEP_OUTCOMES.get(step.type, ()))

    def key(route: tuple[str, str]) -> tuple[int, str]:
        outcome = route[0]
        return (known.index(outcome) if outcome in known else len(known), outcome)

    return key


def _describe(plan: Plan, step_id: str) -> str:
    step = plan.steps[step_id]
    title = f"<br/>{step.title}" if step.title else ""
    return f"{step_id}<br/>{_detail(step)}{title}"


def _in_walk_order(plan: Plan) -> list[tuple[str, PlanStep]]:
    """Steps in the order a run meets them (breadth first from the start), then the rest."""
    order: list[str] = []
    queue = [plan.start]
    while queue:
        step_id = queue.pop(0)
        if step_id in order or step_id not in plan.steps:
            continue
        order.append(step_id)
        step = plan.steps[step_id]
        queue.extend(target for _, target in sorted(step.routes.items(), key=_outcome_order(step)))
    order += [step_id for step_id in plan.steps if step_id not in order]
    return [(step_id, plan.steps[step_id]) for step_id in order]


def mermaid(plan: Plan) -> str:
    """A `flowchart TD` of the plan: entry, every step, and where each outcome goes."""
    trigger = plan.trigger
    entry = f"event {trigger.event}" if trigger.kind == "event" else f"segment {trigger.segment}"
    if trigger.where:
        entry += f"<br/>where {trigger.where}"
    if plan.holdout_percent:
        entry += f"<br/>holdout {plan.holdout_percent:g}%"
    lines = ["flowchart TD", f"    entry(({_label('enter: ' + entry)}))"]
    for step_id, step in _in_walk_order(plan):
        opening, closing = _SHAPES[step.type]
        lines.append(f"    {_node(step_id)}{opening}{_label(_describe(plan, step_id))}{closing}")
    lines.append(f"    done((({_label('end')})))")
    lines.append(f"    entry --> {_node(plan.start)}")
    for step_id, step in _in_walk_order(plan):
        if step.type == "end":
            lines.append(f"    {_node(step_id)} --> done")
            continue
        # Outcomes that lead to the same place share one edge, so the chart stays readable.
        labels: dict[str, list[str]] = {}
        for outcome, target in sorted(step.routes.items(), key=_outcome_order(step)):
            label = outcome
            if isinstance(step, BranchPlanStep) and outcome.isdigit():
                case = step.params.cases[int(outcome)]
                label = case.when if isinstance(case, WhenCase) else f"in {case.segment}"
            labels.setdefault(target, []).append(label)
        for target, names in labels.items():
            destination = "done" if target == "end" else _node(target)
            lines.append(f"    {_node(step_id)} -->|{_label(' / '.join(names))}| {destination}")
    if plan.goal is not None:
        within = human_duration(plan.goal.within_seconds)
        goal = f"goal: {plan.goal.event} within {within}" + ("" if plan.goal.exit else " (counted)")
        lines.append(f"    goal>{_label(goal)}]")
    for index, rule in enumerate(plan.exits):
        where = f"<br/>where {rule.where}" if rule.where else ""
        lines.append(f"    exit_{index}>{_label(f'exit on {rule.event}{where}')}]")
    return "\n".join(lines) + "\n"
