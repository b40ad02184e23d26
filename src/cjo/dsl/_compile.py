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
from cjo.dsl._journey import (
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
from cjo.dsl._plan import (
    Plan,
    PlanContactPolicy,
    PlanEntry,
    PlanExit,
    PlanFrequency,
    PlanGoal,
    PlanJourney,
    PlanLimits,
    PlanQuietHours,
    PlanResource,
    PlanStep,
    PlanTrigger,
)
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


class CompileError(Exception):
    """Compilation was asked of a journey that did not validate."""


def _values(values: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`${ expr }` strings become {"expr": ...}; anything else {"value": ...} (see `Value`)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in (values or {}).items():
        expression = expression_of(value)
        out[key] = {"expr": expression} if expression is not None else {"value": value}
    return out


def _utc(timestamp: str) -> str:
    return parse_timestamp(timestamp).astimezone(UTC).isoformat()


def _params(step: Any) -> dict[str, Any]:
    """The normalised settings of one step; keys per type are documented in the README."""
    if isinstance(step, SendStep):
        return {
            "channel": step.channel,
            "template": step.template,
            "vars": _values(step.vars),
            "fallback": [{"channel": f.channel, "template": f.template} for f in step.fallback],
            "marketing": step.marketing,
        }
    if isinstance(step, GrantStep):
        return {"benefit": step.benefit, "quantity": step.quantity}
    if isinstance(step, RiskStep):
        # A reject with no `on.reject` ends the run as `rejected`, not `completed`.
        return {"policy": step.policy, "reject_ends_run": "reject" not in (step.on or {})}
    if isinstance(step, BranchStep):
        return {
            "cases": [
                {"when": case.when} if case.when is not None else {"segment": case.segment}
                for case in step.cases
            ]
        }
    if isinstance(step, SplitStep):
        return {"variants": [{"name": v.name, "weight": v.weight} for v in step.variants]}
    if isinstance(step, WaitStep):
        if step.duration is not None:
            return {"duration_seconds": duration_seconds(step.duration)}
        assert step.until is not None
        if len(step.until) <= 5:
            return {"until_time": step.until.zfill(5)}
        return {"until_timestamp": _utc(step.until)}
    if isinstance(step, WaitForStep):
        return {
            "event": step.event,
            "where": step.where,
            "timeout_seconds": duration_seconds(step.timeout),
        }
    if isinstance(step, UpdateStep):
        tags = step.tags
        return {
            "set": _values(step.set_),
            "tags_add": sorted(set(tags.add)) if tags else [],
            "tags_remove": sorted(set(tags.remove)) if tags else [],
        }
    if isinstance(step, CallStep):
        return {"activity": step.activity, "with": _values(step.with_)}
    assert isinstance(step, EndStep)
    return {"reason": step.reason}


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
        self.pinned: dict[str, dict[str, PlanResource]] = {}

    def pin(self, kind: str, name: str) -> Resolved:
        resolved = self.bundle.find(kind, self.business_line, name)
        if resolved is None:
            raise CompileError(f"{kind} '{name}' is not defined")
        if name in self.pinned.get(kind, {}):
            return resolved
        spec = resolved.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.pinned.setdefault(kind, {})[name] = PlanResource(version=resolved.version, spec=spec)
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
        "steps": {
            step.id: PlanStep(
                id=step.id,
                type=step.type,
                title=step.title,
                params=_params(step),
                routes=routes[step.id],
            )
            for step in spec.steps
        },
        "resources": pins.pinned,
    }
    draft = Plan(version="", **body)
    meaning = draft.model_dump(mode="json", exclude={"version"})
    # Rebuilt from canonical JSON so every map in the Plan has sorted keys: the
    # same meaning gives the same bytes, not only the same hash.
    return Plan.model_validate_json(canonical_json({**meaning, "version": content_hash(meaning)}))
