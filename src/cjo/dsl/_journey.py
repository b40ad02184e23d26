"""The Journey kind: trigger, entry, goal, exits, limits and the step graph."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from cjo.dsl._resources import FrequencyRule, QuietHours
from cjo.dsl._types import (
    DURATION_PATTERN,
    ActivityName,
    Channel,
    Duration,
    EventName,
    Expression,
    Name,
    StepId,
    StepRef,
    Strict,
    Timestamp,
    TimeZone,
    ValueMap,
    duration_seconds,
    human_duration,
    parse_time_of_day,
    parse_timestamp,
    tagged_union,
)

STEP_TYPES = (
    "send",
    "grant",
    "risk",
    "branch",
    "split",
    "wait",
    "wait_for",
    "update",
    "call",
    "end",
)
FORMS = ("user", "channel", "product", "content", "activity")
# Outcomes each built-in step type can produce; `call` takes its activity's.
STEP_OUTCOMES: dict[str, tuple[str, ...]] = {
    "send": ("sent", "suppressed"),
    "grant": ("granted", "exhausted", "limited"),
    "risk": ("pass", "review", "reject"),
    "wait": ("done",),
    "wait_for": ("event", "timeout"),
    "update": ("done",),
    "end": (),
}
# Profile fields an `update` step may not overwrite: identity and contact data
# belong to the systems of record, tags/consents have their own paths, and `attrs` is
# where every other name in `set` goes already.
READ_ONLY_PROFILE_FIELDS = frozenset(
    {
        "id",
        "name",
        "phone",
        "email",
        "birthday",
        "created_at",
        "tags",
        "consents",
        "addresses",
        "attrs",
    }
)
# Profile fields an `update` step writes to their own columns; any other name in `set` is
# a custom attribute (`user.attrs.<name>`).
WRITABLE_PROFILE_FIELDS = frozenset({"locale", "timezone", "lifecycle"})


def _check_wait_until(value: str) -> str:
    if re.match(r"^\d{1,2}:\d{2}$", value):
        parse_time_of_day(value)
    else:
        try:
            parse_timestamp(value)
        except ValueError:
            raise ValueError(
                f"'{value}' is neither a time of day (\"HH:MM\") nor an ISO 8601 timestamp"
            ) from None
    return value


WaitUntil = Annotated[
    str,
    AfterValidator(_check_wait_until),
    WithJsonSchema(
        {"type": "string", "description": '"HH:MM" in the user\'s time, or a timestamp'}
    ),
]

_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly")


def _cron_value(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    value = names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise ValueError(f"cron {what} '{text}' is out of range {low}-{high}")
    return value


def check_cron(expression: str) -> str:
    """Standard five-field cron (names like MON and JAN allowed) or an @macro."""
    if expression.strip() in _CRON_MACROS:
        return expression
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron '{expression}' needs five fields: minute hour day-of-month month day-of-week"
        )
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"cron {what} step '{step}' must be a positive number")
            if base == "*":
                continue
            start, _, stop = base.partition("-")
            first = _cron_value(start, low, high, names, what)
            if stop and _cron_value(stop, low, high, names, what) < first:
                raise ValueError(f"cron {what} range '{base}' runs backwards")
    return expression


Cron = Annotated[
    str,
    AfterValidator(check_cron),
    WithJsonSchema({"type": "string", "description": "five-field cron, e.g. '0 9 * * MON'"}),
]


def _check_reentry(value: str) -> str:
    if value in ("never", "always"):
        return value
    if re.match(DURATION_PATTERN, value):
        return human_duration(duration_seconds(value))  # says so itself if it is zero
    raise ValueError(f"reentry is 'never', 'always' or a Duration such as 30d, not '{value}'")


Reentry = Annotated[
    str,
    AfterValidator(_check_reentry),
    WithJsonSchema({"type": "string", "description": "never | always | a Duration"}),
]


class StepBase(Strict):
    id: StepId
    title: str | None = None
    next: StepRef | None = None
    on: dict[str, StepRef] | None = None


class FallbackTarget(Strict):
    channel: Channel
    template: Name


class SendStep(StepBase):
    type: Literal["send"]
    channel: Channel
    template: Name
    vars: ValueMap | None = None
    fallback: list[FallbackTarget] = Field(default_factory=list)
    marketing: bool = True


class GrantStep(StepBase):
    type: Literal["grant"]
    benefit: Name
    quantity: int = Field(default=1, ge=1)


class RiskStep(StepBase):
    type: Literal["risk"]
    policy: Name


class BranchCase(Strict):
    when: Expression | None = None
    segment: Name | None = None
    next: StepRef

    @model_validator(mode="after")
    def _one_test(self) -> BranchCase:
        if (self.when is None) == (self.segment is None):
            raise ValueError("a branch case needs exactly one of 'when' or 'segment'")
        return self


class BranchStep(StepBase):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: StepRef


class Variant(Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
    weight: int = Field(ge=1)
    next: StepRef


class SplitStep(StepBase):
    type: Literal["split"]
    variants: list[Variant] = Field(min_length=2)


class WaitStep(StepBase):
    type: Literal["wait"]
    duration: Duration | None = None
    until: WaitUntil | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> WaitStep:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of 'duration' or 'until'")
        return self


class WaitForStep(StepBase):
    type: Literal["wait_for"]
    event: EventName
    where: Expression | None = None
    timeout: Duration


class TagChanges(Strict):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class UpdateStep(StepBase):
    type: Literal["update"]
    set_: ValueMap | None = Field(default=None, alias="set")
    tags: TagChanges | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> UpdateStep:
        if not self.set_ and not (self.tags and (self.tags.add or self.tags.remove)):
            raise ValueError("an update needs 'set' or 'tags' with something in it")
        for key in self.set_ or {}:
            if key in READ_ONLY_PROFILE_FIELDS:
                raise ValueError(f"profile field '{key}' cannot be set by a journey")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", str(key)):
                raise ValueError(f"'{key}' is not an attribute name (letters, digits and '_')")
        return self


class CallStep(StepBase):
    type: Literal["call"]
    activity: ActivityName
    with_: ValueMap = Field(default_factory=dict, alias="with")


class EndStep(StepBase):
    type: Literal["end"]
    reason: str | None = None


def _choose_step(value: Any) -> str | None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("type"), str)
        and value["type"] in STEP_TYPES
    ):
        return f"step:{value['type']}"
    return None


STEP_MODELS: dict[str, type[StepBase]] = {
    "send": SendStep,
    "grant": GrantStep,
    "risk": RiskStep,
    "branch": BranchStep,
    "split": SplitStep,
    "wait": WaitStep,
    "wait_for": WaitForStep,
    "update": UpdateStep,
    "call": CallStep,
    "end": EndStep,
}
if TYPE_CHECKING:
    Step = (
        SendStep
        | GrantStep
        | RiskStep
        | BranchStep
        | SplitStep
        | WaitStep
        | WaitForStep
        | UpdateStep
        | CallStep
        | EndStep
    )
else:
    Step = tagged_union(
        {f"step:{name}": model for name, model in STEP_MODELS.items()},
        _choose_step,
        error="a step needs a 'type': one of " + ", ".join(STEP_TYPES),
    )


class Schedule(Strict):
    at: Timestamp | None = None
    cron: Cron | None = None
    timezone: TimeZone | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.at is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of 'at' or 'cron'")
        if self.timezone is not None and self.cron is None:
            raise ValueError("'timezone' goes with 'cron'; 'at' carries its own offset")
        return self


class Trigger(Strict):
    # Both are optional here so that "both or neither" is reported as E240, not E110.
    event: str | None = None
    where: Expression | None = None
    segment: Name | None = None
    schedule: Schedule | None = None


class Entry(Strict):
    reentry: Reentry = "never"
    key: Expression | None = None


class Goal(Strict):
    event: str | None = None
    where: Expression | None = None
    within: Duration
    exit: bool = True


class ExitRule(Strict):
    event: str | None = None
    where: Expression | None = None


class Limits(Strict):
    quiet_hours: QuietHours | None = Field(default=None, alias="quietHours")
    frequency: list[FrequencyRule] = Field(default_factory=list)
    send_rate: int | None = Field(default=None, ge=1, alias="sendRate")
    max_entries: int | None = Field(default=None, ge=1, alias="maxEntries")


class JourneySpec(Strict):
    form: Literal["user", "channel", "product", "content", "activity"]
    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    goal: Goal | None = None
    exit: list[ExitRule] = Field(default_factory=list)
    holdout: float = Field(default=0, ge=0, le=50)
    limits: Limits = Field(default_factory=Limits)
    steps: list[Step] = Field(min_length=1)
