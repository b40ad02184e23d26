"""Compile a validated Journey to its Plan."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from cjo.dsl._bundle import Bundle, Resolved
from cjo.dsl._cel import expression_of
from cjo.dsl._check_graph import transitions
from cjo.dsl._check_journey import outcomes_of
from cjo.dsl._check_resources import segment_references
from cjo.dsl._documents import JourneyDocument
from cjo.dsl._errors import CompileError
from cjo.dsl._journey import (
    BranchCase,
    BranchStep,
    CallStep,
    EndStep,
    GrantStep,
    JourneySpec,
    RiskStep,
    SendStep,
    SplitStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
)
from cjo.dsl._lookup import canonical_json, content_hash
from cjo.dsl._resources import (
    DEFAULT_CONTACT_POLICY,
    ContactPolicySpec,
    FrequencyRule,
    ListCheck,
    QuietHours,
    RiskPolicySpec,
    VelocityCheck,
)
from cjo.dsl._types import duration_seconds, parse_timestamp
from cjo.dsl.plan import (
    BranchParams,
    BranchPlanStep,
    CallParams,
    CallPlanStep,
    EndParams,
    EndPlanStep,
    ExpressionValue,
    GrantParams,
    GrantPlanStep,
    LiteralValue,
    Plan,
    PlanContactPolicy,
    PlanEntry,
    PlanExit,
    PlanFallback,
    PlanFrequency,
    PlanGoal,
    PlanJourney,
    PlanLimits,
    PlanQuietHours,
    PlanResources,
    PlanStep,
    PlanTrigger,
    PlanVariant,
    RiskParams,
    RiskPlanStep,
    SegmentCase,
    SendParams,
    SendPlanStep,
    SplitParams,
    SplitPlanStep,
    UpdateParams,
    UpdatePlanStep,
    Values,
    WaitDuration,
    WaitForParams,
    WaitForPlanStep,
    WaitPlanStep,
    WaitUntilTime,
    WaitUntilTimestamp,
    WhenCase,
)


def _values(values: dict[str, Any] | None) -> Values:
    """`${ expr }` strings become expressions; anything else is a literal value."""
    out: Values = {}
    for key, value in (values or {}).items():
        expression = expression_of(value)
        out[key] = ExpressionValue(expr=expression) if expression else LiteralValue(value=value)
    return out


def _utc(timestamp: str) -> str:
    return parse_timestamp(timestamp).astimezone(UTC).isoformat()


def _case(case: BranchCase) -> WhenCase | SegmentCase:
    if case.when is not None:
        return WhenCase(when=case.when)
    assert case.segment is not None  # the DSL model checked: exactly one of the two
    return SegmentCase(segment=case.segment)


def _plan_step(step: Any, routes: dict[str, str]) -> PlanStep:
    """One step of the Plan: its settings normalised, its routes spelled out."""
    common: dict[str, Any] = {"id": step.id, "title": step.title, "routes": routes}
    if isinstance(step, SendStep):
        fallback = [PlanFallback(channel=f.channel, template=f.template) for f in step.fallback]
        send = SendParams(
            channel=step.channel,
            template=step.template,
            vars=_values(step.vars),
            fallback=fallback,
            marketing=step.marketing,
        )
        return SendPlanStep(type="send", params=send, **common)
    if isinstance(step, GrantStep):
        grant = GrantParams(benefit=step.benefit, quantity=step.quantity)
        return GrantPlanStep(type="grant", params=grant, **common)
    if isinstance(step, RiskStep):
        risk = RiskParams(policy=step.policy, reject_ends_run="reject" not in (step.on or {}))
        return RiskPlanStep(type="risk", params=risk, **common)
    if isinstance(step, BranchStep):
        cases = [_case(case) for case in step.cases]
        return BranchPlanStep(type="branch", params=BranchParams(cases=cases), **common)
    if isinstance(step, SplitStep):
        variants = [PlanVariant(name=v.name, weight=v.weight) for v in step.variants]
        return SplitPlanStep(type="split", params=SplitParams(variants=variants), **common)
    if isinstance(step, WaitStep):
        bound: WaitDuration | WaitUntilTime | WaitUntilTimestamp
        if step.duration is not None:
            bound = WaitDuration(duration_seconds=duration_seconds(step.duration))
        elif step.until is not None and len(step.until) <= 5:
            bound = WaitUntilTime(until_time=step.until.zfill(5))
        else:
            assert step.until is not None
            bound = WaitUntilTimestamp(until_timestamp=_utc(step.until))
        return WaitPlanStep(type="wait", params=bound, **common)
    if isinstance(step, WaitForStep):
        awaited = WaitForParams(
            event=step.event, where=step.where, timeout_seconds=duration_seconds(step.timeout)
        )
        return WaitForPlanStep(type="wait_for", params=awaited, **common)
    if isinstance(step, UpdateStep):
        tags = step.tags
        update = UpdateParams(
            set=_values(step.set_),
            tags_add=sorted(set(tags.add)) if tags else [],
            tags_remove=sorted(set(tags.remove)) if tags else [],
        )
        return UpdatePlanStep(type="update", params=update, **common)
    if isinstance(step, CallStep):
        call = CallParams(activity=step.activity, with_=_values(step.with_))
        return CallPlanStep(type="call", params=call, **common)
    assert isinstance(step, EndStep)
    return EndPlanStep(type="end", params=EndParams(reason=step.reason), **common)


def _quiet(hours: QuietHours | None) -> PlanQuietHours | None:
    if hours is None:
        return None
    return PlanQuietHours(start=hours.start, end=hours.end, action=hours.action)


def _frequency(rules: list[FrequencyRule]) -> list[PlanFrequency]:
    return [
        PlanFrequency(channel=r.channel, max=r.max, per_seconds=duration_seconds(r.per))
        for r in rules
    ]


class _Pins:
    """Collects the resources a journey uses, following segment references."""

    def __init__(self, bundle: Bundle, business_line: str) -> None:
        self.bundle = bundle
        self.business_line = business_line
        self.pinned: dict[str, dict[str, dict[str, Any]]] = {}

    def pin(self, kind: str, name: str) -> Resolved:
        resolved = self.bundle.find(kind, self.business_line, name)
        if resolved is None:
            raise CompileError(f"{kind} '{name}' is not defined")
        if name in self.pinned.get(kind, {}):
            return resolved
        pinned = {"version": resolved.version, "spec": resolved.spec}
        self.pinned.setdefault(kind, {})[name] = pinned
        if kind == "Segment":
            for _, child in segment_references(resolved.spec.match, ()):
                self.pin("Segment", child)
        elif kind == "RiskPolicy":
            assert isinstance(resolved.spec, RiskPolicySpec)
            for rule in resolved.spec.rules:
                if not isinstance(rule.if_, ListCheck | VelocityCheck):
                    for _, child in segment_references(rule.if_, ()):
                        self.pin("Segment", child)
        return resolved


def _pin_all(pins: _Pins, spec: JourneySpec) -> None:
    if spec.trigger.segment is not None:
        pins.pin("Segment", spec.trigger.segment)
    for step in spec.steps:
        if isinstance(step, SendStep):
            pins.pin("Template", step.template)
            for fallback in step.fallback:
                pins.pin("Template", fallback.template)
        elif isinstance(step, GrantStep):
            pins.pin("Benefit", step.benefit)
        elif isinstance(step, RiskStep):
            pins.pin("RiskPolicy", step.policy)
        elif isinstance(step, BranchStep):
            for case in step.cases:
                if case.segment is not None:
                    pins.pin("Segment", case.segment)


def _contact_policy(bundle: Bundle, business_line: str) -> PlanContactPolicy:
    resolved = bundle.find("ContactPolicy", business_line, "default")
    policy = resolved.spec if resolved is not None else DEFAULT_CONTACT_POLICY
    assert isinstance(policy, ContactPolicySpec)
    return PlanContactPolicy(
        version=resolved.version if resolved is not None else None,
        timezone=policy.timezone,
        quiet_hours=_quiet(policy.quiet_hours),
        frequency=_frequency(policy.frequency),
        consent=dict(sorted(policy.consent.items())),
        opt_out_pattern=policy.opt_out_pattern,
    )


def compile_journey(bundle: Bundle, document: JourneyDocument) -> Plan:
    """The Plan of one journey of a bundle that validated without errors."""
    spec = document.spec
    trigger = spec.trigger
    schedule = trigger.schedule
    entry = spec.entry
    reentry = entry.reentry
    pins = _Pins(bundle, document.business_line)
    _pin_all(pins, spec)
    routes = transitions(spec.steps, outcomes_of(bundle, spec))
    body: dict[str, Any] = {
        "journey": PlanJourney(
            name=document.name,
            business_line=document.business_line,
            title=document.metadata.title,
            labels=dict(document.metadata.labels),
            form=spec.form,
        ),
        "trigger": PlanTrigger(
            kind="event" if trigger.event is not None else "audience",
            event=trigger.event,
            where=trigger.where,
            segment=trigger.segment,
            schedule_at=_utc(schedule.at) if schedule and schedule.at else None,
            schedule_cron=" ".join(schedule.cron.split()) if schedule and schedule.cron else None,
            schedule_timezone=(schedule.timezone if schedule and schedule.cron else None),
        ),
        "entry": PlanEntry(
            reentry="never" if reentry == "never" else "always" if reentry == "always" else "after",
            reentry_after_seconds=(
                duration_seconds(reentry) if reentry not in ("never", "always") else None
            ),
            key=entry.key,
        ),
        "goal": (
            PlanGoal(
                event=spec.goal.event or "",
                where=spec.goal.where,
                within_seconds=duration_seconds(spec.goal.within),
                exit=spec.goal.exit,
            )
            if spec.goal is not None
            else None
        ),
        "exits": [PlanExit(event=rule.event or "", where=rule.where) for rule in spec.exit],
        "holdout_percent": float(spec.holdout),
        "limits": PlanLimits(
            quiet_hours=_quiet(spec.limits.quiet_hours),
            frequency=_frequency(spec.limits.frequency),
            send_rate=spec.limits.send_rate,
            max_entries=spec.limits.max_entries,
        ),
        "contact_policy": _contact_policy(bundle, document.business_line),
        "start": spec.steps[0].id,
        "steps": {step.id: _plan_step(step, routes[step.id]) for step in spec.steps},
        "resources": PlanResources.model_validate(pins.pinned),
    }
    draft = Plan(version="", **body)
    meaning = draft.model_dump(mode="json", exclude={"version"})
    # Rebuilt from canonical JSON so every map in the Plan has sorted keys: the
    # same meaning gives the same bytes, not only the same hash.
    return Plan.model_validate_json(canonical_json({**meaning, "version": content_hash(meaning)}))
