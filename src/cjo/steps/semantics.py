"""What each step of a Plan means: the requests it makes, the result it gives, where it leads.

The per-user interpreter (`cjo.workflows.journey`) calls these for one user; a cohort walker
calls the same functions for each member of a page. Everything here is pure and
deterministic: `now` is an argument, nothing reads a clock, the network or randomness.

- send, grant, risk, update, call: the activity's request, and the result it gives;
- branch: whether a `when` case holds, the membership query of a segment case, the outcome;
- split: the variant; wait: the moment it ends; wait_for: whether an event is the awaited
  one; end: its result;

and for every step: `next_step` (where an outcome leads) and `ends_run` (an outcome that
ends the run there, with a reason of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cjo.dsl import Plan, evaluate_expression
from cjo.dsl.plan import (
    CallPlanStep,
    EndPlanStep,
    ExpressionValue,
    GrantPlanStep,
    PlanStep,
    RiskPlanStep,
    SegmentCase,
    SendPlanStep,
    SplitPlanStep,
    UpdatePlanStep,
    Values,
    WaitDuration,
    WaitForPlanStep,
    WaitPlanStep,
    WaitUntilTime,
    as_written,
)
from cjo.steps.contracts import (
    CallOutcome,
    CallSpec,
    CheckMembershipInput,
    FallbackOption,
    GrantOutcome,
    GrantRequest,
    ProfileUpdate,
    RiskRequest,
    RiskVerdict,
    SendDecision,
    SendRequest,
    TemplateRef,
)
from cjo.steps.rules import next_time_of_day, pick_variant, zone_of
from cjo.steps.run import (
    EndReason,
    JourneyEvent,
    RunRecords,
    StepResult,
    UserProfile,
    cel_value,
    expression_context,
    steps_context,
    utc,
)

END = "end"
# A branch's outcome when no case holds; a case's outcome is its index.
BRANCH_DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class RunContext:
    """One user's run, as a step sees it: who, what started it, what earlier steps gave."""

    plan: Plan
    user_id: str
    trigger: JourneyEvent
    profile: UserProfile | None
    steps: Mapping[str, StepResult] = field(default_factory=dict)
    benefit: dict[str, Any] | None = None
    workflow_id: str = ""

    def expressions(self, event: JourneyEvent | None, now: datetime) -> dict[str, Any]:
        """The roots a `when`, a `where` or a `${ }` value is evaluated against."""
        trigger = self.trigger.as_context()
        context: dict[str, Any] = cel_value(
            expression_context(
                user=self.profile.as_context() if self.profile else {},
                trigger=trigger,
                event=event.as_context() if event is not None else trigger,
                steps=steps_context(self.steps),
                journey=self.plan.journey.name,
                version=self.plan.version,
                now=now,
            )
        )
        return context


class ValueFailed(Exception):
    """A `${ }` value of `vars`, `set` or `with` failed to evaluate: the step cannot run."""

    def __init__(self, name: str, expression: str, error: Exception) -> None:
        super().__init__(f"{name}: {expression}: {error}")
        self.name = name
        self.expression = expression
        self.error = error


def entry_context(plan: Plan, profile: UserProfile, trigger: JourneyEvent) -> dict[str, Any]:
    """What a trigger's `where` and the entry key see: the user and the trigger, at the
    trigger's moment, before any step."""
    run = RunContext(plan=plan, user_id=profile.id, trigger=trigger, profile=profile)
    return run.expressions(None, utc(trigger.ts))


# Where outcomes lead -----------------------------------------------------------------------


def next_step(routes: Mapping[str, str], outcome: str | None) -> str | None:
    """The step an outcome leads to; None when it leads to the end (an outcome the step does
    not route, such as none at all, ends the run too)."""
    target = routes.get(outcome or "", END)
    return None if target == END else target


def ends_run(step: PlanStep, outcome: str | None) -> EndReason | None:
    """An outcome that ends the run at once with a reason of its own: a risk `reject` that
    the journey does not route (`on.reject`) ends it as `rejected`."""
    if isinstance(step, RiskPlanStep) and outcome == "reject" and step.params.reject_ends_run:
        return "rejected"
    return None


# Values and expressions --------------------------------------------------------------------


def evaluate_values(values: Values, context: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """`vars`, `set` and `with`: literals as given, expressions evaluated against the context
    (built only if an expression needs it). Raises `ValueFailed` for one that fails."""
    out: dict[str, Any] = {}
    roots: Mapping[str, Any] | None = None
    for name, value in values.items():
        if not isinstance(value, ExpressionValue):
            out[name] = value.value
            continue
        roots = roots if roots is not None else context()
        try:
            out[name] = evaluate_expression(value.expr, dict(roots))
        except Exception as error:  # noqa: BLE001 - CEL reports data problems as any exception
            raise ValueFailed(name, value.expr, error) from None
    return out


# send --------------------------------------------------------------------------------------


def _template(plan: Plan, name: str) -> TemplateRef:
    pinned = plan.resources.templates[name]
    return TemplateRef(name=name, version=pinned.version, spec=pinned.spec)


def send_request(
    step: SendPlanStep,
    run: RunContext,
    *,
    key: str,
    now: datetime,
    values: Mapping[str, Any],
    records: RunRecords | None,
) -> SendRequest:
    plan, params = run.plan, step.params
    return SendRequest(
        key=key,
        business_line=plan.journey.business_line,
        journey=plan.journey.name,
        journey_version=plan.version,
        workflow_id=run.workflow_id,
        step_id=step.id,
        user_id=run.user_id,
        at=now,
        channel=params.channel,
        template=_template(plan, params.template),
        fallback=[
            FallbackOption(channel=option.channel, template=_template(plan, option.template))
            for option in params.fallback
        ],
        marketing=params.marketing,
        vars=dict(values),
        trigger=run.trigger.as_context(),
        steps=steps_context(run.steps),
        benefit=run.benefit,
        limits=plan.limits,
        policy=plan.contact_policy,
        run=records,
    )


def send_result(decision: SendDecision) -> StepResult:
    return StepResult(outcome=decision.outcome, result=decision.detail())


def delayed_result(until: datetime) -> StepResult:
    """Quiet hours put a send off (`delay`): recorded under `<key>/delay`, not an outcome."""
    return StepResult(outcome="delayed", result={"until": until.isoformat()})


# grant -------------------------------------------------------------------------------------


def grant_request(
    step: GrantPlanStep, run: RunContext, *, key: str, now: datetime, records: RunRecords | None
) -> GrantRequest:
    plan, name = run.plan, step.params.benefit
    pinned = plan.resources.benefits[name]
    return GrantRequest(
        key=key,
        business_line=plan.journey.business_line,
        benefit=name,
        benefit_version=pinned.version,
        spec=pinned.spec,
        user_id=run.user_id,
        quantity=step.params.quantity,
        at=now,
        workflow_id=run.workflow_id,
        step_id=step.id,
        run=records,
    )


def grant_result(outcome: GrantOutcome) -> StepResult:
    return StepResult(outcome=outcome.outcome, result=outcome.detail())


def granted_benefit(plan: Plan, step: GrantPlanStep, outcome: GrantOutcome) -> dict[str, Any]:
    """The `benefit` root later templates see after a grant."""
    spec = plan.resources.benefits[step.params.benefit].spec
    # "20 CNY" in a message, not "20.0 CNY"
    value: float | int = int(spec.value) if spec.value.is_integer() else spec.value
    return {
        "id": outcome.grant_id,
        "name": step.params.benefit,
        "type": spec.type,
        "value": value,
        "unit": outcome.unit,
        "quantity": outcome.quantity,
        "code": outcome.code,
        "expires_at": outcome.expires_at,
    }


# risk --------------------------------------------------------------------------------------


def _risk_roots(run: RunContext, now: datetime) -> dict[str, Any]:
    """The roots a list key sees besides `user` and `now`, which the activity fills in as of
    its own reading: the trigger, the event, earlier steps and the journey."""
    roots = run.expressions(None, now)
    return {name: value for name, value in roots.items() if name not in ("user", "now")}


def risk_request(step: RiskPlanStep, run: RunContext, *, key: str, now: datetime) -> RiskRequest:
    plan, name = run.plan, step.params.policy
    pinned = plan.resources.risk_policies[name]
    return RiskRequest(
        key=key,
        user_id=run.user_id,
        business_line=plan.journey.business_line,
        policy=name,
        policy_version=pinned.version,
        spec=as_written(pinned.spec),
        segments=plan.resources.segments_as_written(),
        context=_risk_roots(run, now),
        at=now,
        timezone=plan.contact_policy.timezone,
    )


def risk_result(verdict: RiskVerdict) -> StepResult:
    return StepResult(outcome=verdict.outcome, result=verdict.detail())


# branch ------------------------------------------------------------------------------------


def case_outcome(index: int) -> str:
    return str(index)


def membership_query(
    plan: Plan, case: SegmentCase, user_ids: list[str], now: datetime
) -> CheckMembershipInput:
    return CheckMembershipInput(
        business_line=plan.journey.business_line,
        segment=case.segment,
        segments=plan.resources.segments_as_written(),
        at=now,
        timezone=plan.contact_policy.timezone,
        user_ids=user_ids,
    )


# split -------------------------------------------------------------------------------------


def split_variant(plan: Plan, step: SplitPlanStep, user_id: str) -> str:
    return pick_variant(plan.journey.name, step.id, user_id, step.params.variants)


# wait, wait_for ----------------------------------------------------------------------------


def wait_until(
    plan: Plan, step: WaitPlanStep, profile: UserProfile | None, now: datetime
) -> datetime:
    """When the wait ends: after its duration, at the next `HH:MM` in the user's time zone
    (else the business line's), or at its moment."""
    bound = step.params
    if isinstance(bound, WaitDuration):
        return now + timedelta(seconds=bound.duration_seconds)
    if isinstance(bound, WaitUntilTime):
        zone = zone_of(profile.timezone if profile else None, plan.contact_policy.timezone)
        return next_time_of_day(now, bound.until_time, zone)
    return datetime.fromisoformat(bound.until_timestamp)


def wait_result(until: datetime) -> StepResult:
    return StepResult(outcome="done", result={"until": until.isoformat()})


def awaits(step: WaitForPlanStep, event: JourneyEvent, holds: Callable[[str], bool]) -> bool:
    """Whether `event` is the one the step waits for (its `where`, if any, holds)."""
    where = step.params.where
    return event.name == step.params.event and (where is None or holds(where))


def event_result(event: JourneyEvent | None) -> StepResult:
    if event is None:
        return StepResult(outcome="timeout")
    return StepResult(outcome="event", result={"event": event.name}, event=event)


# update, call, end -------------------------------------------------------------------------


def update_request(
    step: UpdatePlanStep, *, key: str, user_id: str, now: datetime, values: Mapping[str, Any]
) -> ProfileUpdate:
    return ProfileUpdate(
        key=key,
        user_id=user_id,
        at=now,
        set=dict(values),
        tags_add=step.params.tags_add,
        tags_remove=step.params.tags_remove,
    )


def updated_profile(
    step: UpdatePlanStep, profile: UserProfile, values: Mapping[str, Any]
) -> UserProfile:
    """The profile as the update leaves it, so later steps see the change without a reload."""
    return profile.updated(values, step.params.tags_add, step.params.tags_remove)


def update_result(values: Mapping[str, Any]) -> StepResult:
    return StepResult(outcome="done", result={"set": dict(values)})


def call_request(
    step: CallPlanStep, run: RunContext, *, key: str, values: Mapping[str, Any]
) -> CallSpec:
    return CallSpec(
        key=key,
        activity=step.params.activity,
        params=dict(values),
        user_id=run.user_id,
        profile=cel_value(run.profile.model_dump()) if run.profile else {},
    )


def call_result(outcome: CallOutcome) -> StepResult:
    return StepResult(outcome=outcome.outcome, result=outcome.result)


def end_result(step: EndPlanStep) -> StepResult:
    return StepResult(outcome=None, result={"reason": step.params.reason})
