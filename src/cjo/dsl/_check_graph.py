"""The step graph: ids, transitions, cycles without a pause, unreachable steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cjo.dsl._bundle import Bundle
from cjo.dsl._diagnostics import Severity, did_you_mean
from cjo.dsl._journey import BranchStep, EndStep, JourneySpec, SplitStep
from cjo.dsl._loader import Document, Path

END = "end"
PAUSING_TYPES = frozenset({"wait", "wait_for"})
STEPS: Path = ("spec", "steps")


def transitions(
    steps: Sequence[Any], outcomes: Mapping[str, tuple[str, ...] | None]
) -> dict[str, dict[str, str]]:
    """Where each outcome of each step leads: `on.<outcome>`, else `next`, else the next step.

    Risk `reject` without `on.reject` ends the run. Branch and split route
    through their cases and variants. Targets are step ids or `end`.
    """
    result: dict[str, dict[str, str]] = {}
    for index, step in enumerate(steps):
        following = steps[index + 1].id if index + 1 < len(steps) else END
        if isinstance(step, BranchStep):
            routes = {str(i): case.next for i, case in enumerate(step.cases)}
            routes["default"] = step.default
        elif isinstance(step, SplitStep):
            routes = {variant.name: variant.next for variant in step.variants}
        elif isinstance(step, EndStep):
            routes = {}
        else:
            declared = outcomes.get(step.id) or tuple((step.on or {}).keys()) or ("ok",)
            fallthrough = step.next if step.next is not None else following
            routes = {outcome: (step.on or {}).get(outcome, fallthrough) for outcome in declared}
            if step.type == "risk" and "reject" not in (step.on or {}):
                routes["reject"] = END
        result[step.id] = routes
    return result


def check_graph(
    bundle: Bundle,
    doc: Document,
    spec: JourneySpec,
    outcomes: Mapping[str, tuple[str, ...] | None],
) -> None:
    steps = spec.steps
    ids = [step.id for step in steps]
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.id == END:
            bundle.report(
                doc,
                (*STEPS, index, "id"),
                "E110",
                "'end' is reserved: `next: end` and `on.<outcome>: end` finish the run; "
                "give this step another id",
            )
        elif step.id in seen:
            bundle.report(
                doc,
                (*STEPS, index, "id"),
                "E200",
                f"duplicate step id '{step.id}' (first used by spec.steps[{seen[step.id]}])",
            )
        else:
            seen[step.id] = index
    for index, step in enumerate(steps):
        _check_routes(bundle, doc, index, step, ids, outcomes.get(step.id))
    if len(seen) != len(steps):
        # With duplicate ids the graph is ambiguous: judge it by each id's first step.
        steps = [steps[index] for index in sorted(seen.values())]
    graph = transitions(steps, outcomes)
    known = set(ids)
    edges = {
        source: sorted({t for t in routes.values() if t in known})
        for source, routes in graph.items()
    }
    _check_cycles(bundle, doc, steps, edges, seen)
    _check_reachable(bundle, doc, steps, edges, seen)


def _check_target(
    bundle: Bundle, doc: Document, path: Path, target: str, ids: list[str], field: str
) -> None:
    if target != END and target not in ids:
        hint = did_you_mean(target, [*ids, END])
        bundle.report(doc, path, "E201", f"unknown step '{target}' in {field}{hint}")


def _check_routes(
    bundle: Bundle,
    doc: Document,
    index: int,
    step: Any,
    ids: list[str],
    outcomes: tuple[str, ...] | None,
) -> None:
    at: Path = (*STEPS, index)
    name = f"spec.steps[{index}]"
    if isinstance(step, BranchStep | SplitStep | EndStep):
        routed_by = {"branch": "its cases and default", "split": "its variants", "end": "nothing"}
        for key in ("next", "on"):
            if getattr(step, key) is not None:
                bundle.report(
                    doc,
                    (*at, key),
                    "E110",
                    f"{'an' if step.type == 'end' else 'a'} {step.type} step takes no '{key}': "
                    f"it routes through {routed_by[step.type]}",
                    at_key=True,
                )
    if isinstance(step, BranchStep):
        for case_index, case in enumerate(step.cases):
            path = (*at, "cases", case_index, "next")
            _check_target(bundle, doc, path, case.next, ids, f"{name}.cases[{case_index}].next")
        _check_target(bundle, doc, (*at, "default"), step.default, ids, f"{name}.default")
    elif isinstance(step, SplitStep):
        for variant_index, variant in enumerate(step.variants):
            path = (*at, "variants", variant_index, "next")
            field = f"{name}.variants[{variant_index}].next"
            _check_target(bundle, doc, path, variant.next, ids, field)
    if step.next is not None and not isinstance(step, BranchStep | SplitStep | EndStep):
        _check_target(bundle, doc, (*at, "next"), step.next, ids, f"{name}.next")
    for outcome, target in (step.on or {}).items():
        if isinstance(step, BranchStep | SplitStep | EndStep):
            break
        if outcomes is not None and outcome not in outcomes:
            hint = did_you_mean(outcome, outcomes)
            bundle.report(
                doc,
                (*at, "on", outcome),
                "E110",
                f"a {step.type} step has no outcome '{outcome}'{hint}; "
                f"its outcomes are {', '.join(outcomes)}",
                at_key=True,
            )
        _check_target(bundle, doc, (*at, "on", outcome), target, ids, f"{name}.on.{outcome}")


def _check_cycles(
    bundle: Bundle,
    doc: Document,
    steps: Sequence[Any],
    edges: dict[str, list[str]],
    position: dict[str, int],
) -> None:
    """Report each strongly connected group of steps that loops with no wait inside."""
    pausing = {step.id for step in steps if step.type in PAUSING_TYPES}
    active = {
        sid: [t for t in targets if t not in pausing]
        for sid, targets in edges.items()
        if sid not in pausing
    }
    for component in _strongly_connected(active):
        looping = len(component) > 1 or component[0] in active.get(component[0], [])
        if not looping:
            continue
        ordered = sorted(component, key=lambda sid: position.get(sid, 0))
        first = ordered[0]
        loop = " → ".join([*ordered, first])
        bundle.report(
            doc,
            (*STEPS, position[first], "id"),
            "E202",
            f"steps {loop} form a cycle with no wait or wait_for; it would spin without pause",
        )


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that long journeys cannot overflow the stack."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = [c for c in graph.get(node, []) if c in graph]
            if child_index < len(children):
                work.append((node, child_index + 1))
                child = children[child_index]
                if child not in index_of:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index_of[child])
                continue
            for child in children:
                if child in on_stack:
                    low[node] = min(low[node], low[child])
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _check_reachable(
    bundle: Bundle,
    doc: Document,
    steps: Sequence[Any],
    edges: dict[str, list[str]],
    position: dict[str, int],
) -> None:
    if not steps:
        return
    reached = {steps[0].id}
    frontier = [steps[0].id]
    while frontier:
        for target in edges.get(frontier.pop(), []):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    for step in steps:
        if step.id not in reached:
            bundle.report(
                doc,
                (*STEPS, position[step.id], "id"),
                "W203",
                f"step '{step.id}' is never reached",
                severity=Severity.WARNING,
            )
