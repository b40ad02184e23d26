"""The Plan: a compiled journey, normalised so that its content hash is its version.

A Plan runs on its own: durations are seconds, timestamps are UTC, defaults
are explicit, every transition is spelled out, and every resource the
journey refers to is embedded, typed, with the version it was compiled against.
Workflows receive the Plan in their input and only walk it.

Each step is a model of its own (`SendPlanStep`, `GrantPlanStep`, ...), told apart by
`type`; its settings are in `params`, typed per step type. The JSON of a Plan is its
meaning, and its hash is the journey's version, so the models reproduce format 1's JSON
exactly: a step is `{id, type, title, params, routes}`, a literal value `{"value": ...}`
and an expression `{"expr": ...}`, a wait's bound one of three keys, and each embedded
resource spec in the DSL's own spelling without empty fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_serializer,
)

from cjo.dsl._resources import BenefitSpec, RiskPolicySpec, SegmentSpec, TemplateSpec

PLAN_FORMAT = 1


class PlanModel(BaseModel):
    # Field names that are Python keywords (`with`) are aliased; dumps use the aliases, so
    # a Plan reads and writes the same JSON whoever dumps it (the store, Temporal, the hash).
    model_config = ConfigDict(
        extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=True
    )


# Values of `vars`, `set` and `with` ------------------------------------------------------


class LiteralValue(PlanModel):
    """A value given as is (null included: `set: {attr: null}` removes an attribute)."""

    value: Any


class ExpressionValue(PlanModel):
    """A `${ expr }` value: a CEL expression, evaluated when the step runs."""

    expr: str


# Exactly one key, so a literal null and an expression can never be mistaken for each other.
Value = LiteralValue | ExpressionValue
Values = dict[str, Value]


# Steps ------------------------------------------------------------------------------------


class _StepBase(PlanModel):
    id: str
    title: str | None = None
    # outcome -> step id or "end". Empty for `end`.
    routes: dict[str, str] = Field(default_factory=dict)


class PlanFallback(PlanModel):
    channel: str
    template: str


class SendParams(PlanModel):
    channel: str
    template: str
    vars: Values
    fallback: list[PlanFallback]
    marketing: bool


class SendPlanStep(_StepBase):
    type: Literal["send"]
    params: SendParams


class GrantParams(PlanModel):
    benefit: str
    quantity: int


class GrantPlanStep(_StepBase):
    type: Literal["grant"]
    params: GrantParams


class RiskParams(PlanModel):
    policy: str
    # A reject with no `on.reject` ends the run as `rejected`, not `completed`.
    reject_ends_run: bool


class RiskPlanStep(_StepBase):
    type: Literal["risk"]
    params: RiskParams


class WhenCase(PlanModel):
    when: str


class SegmentCase(PlanModel):
    segment: str


class BranchParams(PlanModel):
    cases: list[WhenCase | SegmentCase]


class BranchPlanStep(_StepBase):
    type: Literal["branch"]
    params: BranchParams


class PlanVariant(PlanModel):
    name: str
    weight: int


class SplitParams(PlanModel):
    variants: list[PlanVariant]


class SplitPlanStep(_StepBase):
    type: Literal["split"]
    params: SplitParams


class WaitDuration(PlanModel):
    duration_seconds: int


class WaitUntilTime(PlanModel):
    """`HH:MM` in the user's time zone (else the business line's)."""

    until_time: str


class WaitUntilTimestamp(PlanModel):
    """An ISO 8601 moment in UTC."""

    until_timestamp: str


class WaitPlanStep(_StepBase):
    type: Literal["wait"]
    params: WaitDuration | WaitUntilTime | WaitUntilTimestamp


class WaitForParams(PlanModel):
    event: str
    where: str | None
    timeout_seconds: int


class WaitForPlanStep(_StepBase):
    type: Literal["wait_for"]
    params: WaitForParams


class UpdateParams(PlanModel):
    set: Values
    tags_add: list[str]
    tags_remove: list[str]


class UpdatePlanStep(_StepBase):
    type: Literal["update"]
    params: UpdateParams


class CallParams(PlanModel):
    activity: str
    with_: Values = Field(alias="with")


class CallPlanStep(_StepBase):
    type: Literal["call"]
    params: CallParams


class EndParams(PlanModel):
    reason: str | None


class EndPlanStep(_StepBase):
    type: Literal["end"]
    params: EndParams


PlanStep = Annotated[
    SendPlanStep
    | GrantPlanStep
    | RiskPlanStep
    | BranchPlanStep
    | SplitPlanStep
    | WaitPlanStep
    | WaitForPlanStep
    | UpdatePlanStep
    | CallPlanStep
    | EndPlanStep,
    Field(discriminator="type"),
]


# The journey's settings -------------------------------------------------------------------


class PlanTrigger(PlanModel):
    kind: Literal["event", "audience"]
    event: str | None = None
    where: str | None = None
    segment: str | None = None
    schedule_at: str | None = None
    schedule_cron: str | None = None
    schedule_timezone: str | None = None


class PlanEntry(PlanModel):
    reentry: Literal["never", "always", "after"] = "never"
    reentry_after_seconds: int | None = None
    key: str | None = None


class PlanGoal(PlanModel):
    event: str
    where: str | None = None
    within_seconds: int
    exit: bool = True


class PlanExit(PlanModel):
    event: str
    where: str | None = None


class PlanQuietHours(PlanModel):
    start: str
    end: str
    action: Literal["delay", "skip"]


class PlanFrequency(PlanModel):
    channel: str
    max: int
    per_seconds: int


class PlanLimits(PlanModel):
    quiet_hours: PlanQuietHours | None = None
    frequency: list[PlanFrequency] = Field(default_factory=list)
    send_rate: int | None = None
    max_entries: int | None = None


class PlanContactPolicy(PlanModel):
    version: str | None
    timezone: str
    quiet_hours: PlanQuietHours | None
    frequency: list[PlanFrequency]
    consent: dict[str, Literal["required", "implied"]]
    opt_out_pattern: str


class PlanJourney(PlanModel):
    name: str
    business_line: str
    title: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    form: str


# Embedded resources ----------------------------------------------------------------------


def as_written(spec: BaseModel) -> dict[str, Any]:
    """A resource spec in the DSL's spelling, empty fields left out: as published and hashed."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Pinned(PlanModel):
    version: str

    @field_serializer("spec", check_fields=False)
    def _spec_as_written(self, spec: BaseModel) -> dict[str, Any]:
        return as_written(spec)


class PinnedSegment(_Pinned):
    spec: SegmentSpec


class PinnedTemplate(_Pinned):
    spec: TemplateSpec


class PinnedBenefit(_Pinned):
    spec: BenefitSpec


class PinnedRiskPolicy(_Pinned):
    spec: RiskPolicySpec


class PlanResources(PlanModel):
    """The resources a journey uses, by kind and name, each pinned to its version."""

    segments: dict[str, PinnedSegment] = Field(default_factory=dict, alias="Segment")
    templates: dict[str, PinnedTemplate] = Field(default_factory=dict, alias="Template")
    benefits: dict[str, PinnedBenefit] = Field(default_factory=dict, alias="Benefit")
    risk_policies: dict[str, PinnedRiskPolicy] = Field(default_factory=dict, alias="RiskPolicy")

    @model_serializer(mode="wrap")
    def _kinds_in_use(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Format 1 lists only the kinds a journey uses.
        dumped: dict[str, Any] = handler(self)
        return {kind: pinned for kind, pinned in dumped.items() if pinned}

    def segments_as_written(self) -> dict[str, dict[str, Any]]:
        """Every pinned segment's spec in DSL form, as the segment activities take them."""
        return {name: as_written(pinned.spec) for name, pinned in self.segments.items()}


class Plan(PlanModel):
    format: int = PLAN_FORMAT
    version: str
    journey: PlanJourney
    trigger: PlanTrigger
    entry: PlanEntry
    goal: PlanGoal | None = None
    exits: list[PlanExit] = Field(default_factory=list)
    holdout_percent: float = 0
    limits: PlanLimits
    contact_policy: PlanContactPolicy
    start: str
    steps: dict[str, PlanStep]
    resources: PlanResources = Field(default_factory=PlanResources)
