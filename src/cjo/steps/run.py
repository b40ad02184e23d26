"""What a journey run knows and writes, as both interpreters and the step activities see it.

- A run's **context**: the user's profile, the event that started it, what earlier steps
  gave (`steps.<id>`), the journey and the moment: the roots of every expression and
  template (`expression_context` builds them, once, for everyone).
- A run's **records**: one `StepRecord` per step a user went through, and `RunRecords`,
  what a step activity writes for the run beside its effect (the pending records, where
  the user goes next, how the run ends).

Plain pydantic models: Temporal's pydantic data converter carries them in workflow and
activity payloads, and the same models come back on replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cjo.dsl import WRITABLE_PROFILE_FIELDS

EndReason = Literal["completed", "converted", "exited", "rejected", "stopped", "failed"]
# Campaign states in which a step activity does nothing and says why.
Hold = Literal["held", "stopped"]


class Contract(BaseModel):
    """Base of the models that cross Temporal: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UserId = Annotated[str, Field(min_length=1, max_length=128)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
# A moment, normalised to UTC (naive input is taken to be UTC).
Moment = Annotated[datetime, AfterValidator(utc)]


def cel_value(value: Any) -> Any:
    """Values CEL accepts: dates become ISO strings, containers are converted deeply."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): cel_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [cel_value(item) for item in value]
    return value


class JourneyEvent(Contract):
    """An event as journeys see it (the DSL's `trigger` and `event` roots)."""

    id: str | None = None
    name: str
    props: dict[str, Any] = Field(default_factory=dict)
    ts: datetime

    def as_context(self) -> dict[str, Any]:
        return {"name": self.name, "props": self.props, "ts": self.ts}


class UserProfile(Contract):
    """A profile as journeys read it: the DSL's `user` root.

    Typed rather than a bare dict so `birthday` and `created_at` cross Temporal's JSON
    payloads as a date and a timestamp, not strings; `as_context()` gives the dict.
    """

    id: str
    name: str | None
    phone: str | None
    email: str | None
    locale: str
    timezone: str | None
    birthday: date | None
    created_at: datetime
    lifecycle: str
    tags: list[str]
    attrs: dict[str, Any]
    addresses: dict[str, Any]
    consents: dict[str, bool]

    def as_context(self) -> dict[str, Any]:
        return self.model_dump()

    def updated(
        self, values: Mapping[str, Any], tags_add: Sequence[str], tags_remove: Sequence[str]
    ) -> UserProfile:
        """The profile as an `update` step leaves it (the rules `profiles.update` applies in
        SQL): writable fields to their columns, other names to `attrs` (null removes one),
        tags removed, then added, each kept once."""
        columns = {k: v for k, v in values.items() if k in WRITABLE_PROFILE_FIELDS}
        attrs = dict(self.attrs)
        for name, value in values.items():
            if name in columns:
                continue
            if value is None:
                attrs.pop(name, None)
            else:
                attrs[name] = value
        removed = set(tags_remove)
        tags = [tag for tag in self.tags if tag not in removed]
        tags += [tag for tag in tags_add if tag not in tags and tag not in removed]
        return self.model_copy(update={**columns, "attrs": attrs, "tags": tags})


class StepResult(Contract):
    """What `steps.<id>` shows to later expressions and templates."""

    outcome: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    event: JourneyEvent | None = None

    def as_context(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "result": self.result,
            "event": self.event.as_context() if self.event else None,
        }


def steps_context(results: Mapping[str, StepResult]) -> dict[str, dict[str, Any]]:
    return {step_id: result.as_context() for step_id, result in results.items()}


def expression_context(
    *,
    user: Mapping[str, Any],
    trigger: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    steps: Mapping[str, Any] | None = None,
    journey: str,
    version: str | None,
    now: datetime,
    **extra: Any,
) -> dict[str, Any]:
    """The roots every `when`, `where`, `${ }` value and template sees, as given.

    `event` is the event being tested (a `where`), else the trigger. Templates add `vars`
    and `benefit` through `extra`. Expressions take them through `cel_value` (CEL has no
    dates); templates take them as they are.
    """
    return {
        "user": user,
        "trigger": trigger,
        "event": event if event is not None else trigger,
        "steps": steps or {},
        "journey": {"name": journey, "version": version},
        "now": now,
        **extra,
    }


class StepRecord(Contract):
    """One step a user went through: its outcome and what it produced."""

    key: str = Field(min_length=1, max_length=512)
    step_id: str
    step_type: str
    outcome: str | None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime

    @classmethod
    def of(
        cls, key: str, step_id: str, step_type: str, result: StepResult, at: datetime
    ) -> StepRecord:
        """The record of a step's result, however it ran (in a workflow or an activity)."""
        return cls(
            key=key,
            step_id=step_id,
            step_type=step_type,
            outcome=result.outcome,
            detail=result.result,
            at=at,
        )


class RunEntry(Contract):
    """How a run began, for its enrolment: written with the run's first records."""

    workflow_id: str
    campaign_id: str | None = None
    business_line: str
    journey: str
    plan_version: str
    entry_key: str | None = None
    holdout: bool = False
    entered_at: datetime


class RunRecords(Contract):
    """What a step activity writes for the run besides its effect.

    `pending`: records the run has not written yet. `routes`: where each outcome of this
    step leads (the step the user will be at; absent or "end" means the run ends there).
    """

    run_key: str
    campaign_id: str | None = None
    pending: list[StepRecord] = Field(default_factory=list)
    routes: dict[str, str] = Field(default_factory=dict)
    variant: str | None = None
    converted_at: datetime | None = None
    # When the outcome leads to the end and nothing else is left to wait for, the activity
    # also closes the enrolment with this reason, and the run needs no `journeys.finish`.
    end_reason: str | None = None
    # Set until the run's enrolment is written: the first write creates it.
    entry: RunEntry | None = None
