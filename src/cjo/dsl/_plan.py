"""The Plan: a compiled journey, normalised so that its content hash is its version.

A Plan runs on its own: durations are seconds, timestamps are UTC, defaults
are explicit, every transition is spelled out, and every resource the
journey refers to is embedded with the version it was compiled against.
Workflows receive the Plan in their input and only walk it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT = 1


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Value(PlanModel):
    """A literal (`value`) or a CEL expression (`expr`), as in `vars`, `set` and `with`."""

    value: Any = None
    expr: str | None = None


class PlanStep(PlanModel):
    id: str
    type: Literal[
        "send", "grant", "risk", "branch", "split", "wait", "wait_for", "update", "call", "end"
    ]
    title: str | None = None
    # Type-specific settings, normalised (see `cjo.dsl._compile` for each type's keys).
    params: dict[str, Any] = Field(default_factory=dict)
    # outcome -> step id or "end". Empty for `end`.
    routes: dict[str, str] = Field(default_factory=dict)


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


class PlanResource(PlanModel):
    """A referenced resource, pinned: its version and its spec in DSL form."""

    version: str
    spec: dict[str, Any]


class PlanJourney(PlanModel):
    name: str
    business_line: str
    title: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    form: str


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
    # kind -> name -> pinned resource (Segment, Benefit, Template, RiskPolicy)
    resources: dict[str, dict[str, PlanResource]] = Field(default_factory=dict)

    def step(self, step_id: str) -> PlanStep:
        return self.steps[step_id]

    def resource_spec(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[kind][name].spec
