"""What each step's activity takes and gives: one request per user, one result per request.

Every step activity is set-based: it takes a list of requests (a per-user run passes a
list of one, a cohort page thousands) and answers one result per request, in order. Each
request carries its idempotency key `<run>/<step id>/<visit>`, so a retried, replayed or
repeated request never does anything twice. `cjo.steps.semantics` builds the requests from
a Plan step and a run's context; the activities (`cjo.activities`) carry them out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from cjo.dsl import BenefitSpec, ContactPolicySpec, TemplateSpec
from cjo.dsl.plan import PlanContactPolicy, PlanLimits
from cjo.steps.run import Contract, Moment, RunRecords, Tag, UserId

DEFAULT_TIMEZONE: str = ContactPolicySpec().timezone

# send --------------------------------------------------------------------------------------


class TemplateRef(Contract):
    """A Template as pinned in the Plan: its name, version and spec."""

    name: str
    version: str | None = None
    spec: TemplateSpec


class FallbackOption(Contract):
    channel: str
    template: TemplateRef


class SendRequest(Contract):
    """One send step of one user, with everything the decision needs."""

    key: str
    business_line: str
    journey: str
    journey_version: str | None = None
    workflow_id: str
    step_id: str
    user_id: str
    at: Moment
    channel: str
    template: TemplateRef
    fallback: list[FallbackOption] = Field(default_factory=list)
    marketing: bool = True
    vars: dict[str, Any] = Field(default_factory=dict)
    trigger: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, Any] = Field(default_factory=dict)
    benefit: dict[str, Any] | None = None
    limits: PlanLimits = Field(default_factory=PlanLimits)
    policy: PlanContactPolicy
    # A journey's send step also writes the run's records (see `cjo.activities.runs`).
    run: RunRecords | None = None


class SendMessageInput(Contract):
    requests: list[SendRequest]


class SendDecision(Contract):
    """`sent` (in the outbox), `suppressed` (recorded with `reason`) or `delay` (until).

    `held`/`stopped`: the run's campaign is paused or stopped, so nothing was decided.
    """

    key: str
    outcome: Literal["sent", "suppressed", "delay", "held", "stopped"]
    message_id: str | None = None
    channel: str | None = None
    fallback_used: bool = False
    reason: str | None = None
    until: datetime | None = None

    def detail(self) -> dict[str, Any]:
        """What the step log keeps of a decision, and `steps.<id>.result` shows."""
        return {
            "message_id": self.message_id,
            "channel": self.channel,
            "fallback_used": self.fallback_used,
            "reason": self.reason,
        }


class SendMessageResult(Contract):
    results: list[SendDecision]


# grant -------------------------------------------------------------------------------------


class GrantRequest(Contract):
    """One user's grant; `key` is the idempotency key `<workflow id>/<step id>/<visit>`."""

    # The spec's camelCase aliases (perUser) must survive Temporal's JSON round trip.
    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    key: str = Field(min_length=1, max_length=512)
    business_line: str
    benefit: str
    benefit_version: str
    spec: BenefitSpec
    user_id: str
    quantity: int = Field(default=1, ge=1)
    at: datetime
    workflow_id: str | None = None
    step_id: str | None = None
    # A journey's grant step also writes the run's records (see `cjo.activities.runs`).
    run: RunRecords | None = None


RefusalReason = Literal["stock", "budget", "validity_ended", "per_user"]


class GrantOutcome(Contract):
    """`reason` says why nothing was granted. `held`/`stopped`: the run's campaign is paused
    or stopped, so nothing was done (ask again after it resumes)."""

    key: str
    outcome: Literal["granted", "exhausted", "limited", "held", "stopped"]
    reason: RefusalReason | None = None
    grant_id: str | None = None
    code: str | None = None
    quantity: int
    value: float | None = None
    unit: str | None = None
    expires_at: datetime | None = None

    def detail(self) -> dict[str, Any]:
        """What the step log keeps of a grant, and `steps.<id>.result` shows."""
        return self.model_dump(mode="json", exclude={"key"})


class GrantBenefitInput(Contract):
    requests: list[GrantRequest]


class GrantBenefitResult(Contract):
    results: list[GrantOutcome]


# risk --------------------------------------------------------------------------------------

RiskAction = Literal["pass", "review", "reject"]


class RiskRequest(Contract):
    """One user's check. `spec` is the RiskPolicy spec in DSL form; `segments` holds the
    specs of segments its conditions reference; `context` adds CEL roots for list keys
    (`trigger`, `event`, `steps`, `journey`) beside `user` and `now`."""

    key: str = Field(min_length=1, max_length=512)
    user_id: str
    business_line: str = "default"
    policy: str
    policy_version: str = Field(default="", max_length=32)
    spec: dict[str, Any]
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    at: datetime
    timezone: str = DEFAULT_TIMEZONE


class EvaluateRiskInput(Contract):
    requests: list[RiskRequest]


class RiskVerdict(Contract):
    key: str
    user_id: str
    outcome: RiskAction
    matched: list[str]
    decision_id: str

    def detail(self) -> dict[str, Any]:
        return {"matched": self.matched, "decision_id": self.decision_id}


class EvaluateRiskResult(Contract):
    results: list[RiskVerdict]


# branch (segment cases) ------------------------------------------------------------------


class SegmentQuery(Contract):
    """Which segment, as of when: the fields every segment activity takes.

    `segments` maps each segment name to its spec in DSL form (`{"match": ...}`): the
    segment itself and every segment it references, as a Plan embeds them or as they are
    published. `at` is the "now" of `within`, `older_than`, `anniversary` and `performed`.
    """

    business_line: str = "default"
    segment: str
    segments: dict[str, dict[str, Any]]
    at: datetime
    timezone: str = DEFAULT_TIMEZONE


class CheckMembershipInput(SegmentQuery):
    user_ids: list[str]


class CheckMembershipResult(Contract):
    """`members[i]` says whether `user_ids[i]` is in the segment."""

    members: list[bool]


# update ------------------------------------------------------------------------------------


class ProfileUpdate(Contract):
    """One user's `update` step: `set` values already evaluated; a null attribute is removed."""

    key: str = Field(min_length=1, max_length=512)
    user_id: UserId
    at: Moment
    set: dict[str, Any] = Field(default_factory=dict)
    tags_add: list[Tag] = Field(default_factory=list)
    tags_remove: list[Tag] = Field(default_factory=list)


class UpdateProfilesInput(Contract):
    requests: list[ProfileUpdate]


class ProfileUpdateOutcome(Contract):
    """`applied` is false when there is no such profile (the step is still done)."""

    key: str
    outcome: Literal["done"] = "done"
    applied: bool


class UpdateProfilesResult(Contract):
    results: list[ProfileUpdateOutcome]


# call --------------------------------------------------------------------------------------


class CallSpec(Contract):
    """One user's `call` step, its `with` values already evaluated."""

    key: str = Field(min_length=1, max_length=512)
    activity: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    user_id: str = Field(min_length=1, max_length=128)
    profile: dict[str, Any] = Field(default_factory=dict)


class RunCallsInput(Contract):
    requests: list[CallSpec]


class CallOutcome(Contract):
    key: str
    outcome: str
    result: dict[str, Any] = Field(default_factory=dict)


class RunCallsResult(Contract):
    """One outcome per request, in the order of the requests."""

    results: list[CallOutcome]
