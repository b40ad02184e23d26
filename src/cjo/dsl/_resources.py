"""Specs of the resource kinds: Segment (people), Benefit and Template (goods),
RiskPolicy and ContactPolicy (the rules of the field)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from cjo.dsl._types import (
    Channel,
    Duration,
    EventName,
    Expression,
    Name,
    Scalar,
    ScalarList,
    Strict,
    TimeOfDay,
    Timestamp,
    TimeZone,
    duration_seconds,
    human_duration,
    tagged_union,
)
from cjo.runtime.channels import ChannelOrAny, ConsentMode, default_consent

DEFAULT_OPT_OUT_PATTERN = "退订|拒收|回复R|STOP|unsubscribe"
DEFAULT_TIMEZONE = "Asia/Shanghai"

# Operators that compare a value; the date-only ones are kept apart because
# they only make sense on dates and timestamps.
VALUE_OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "between",
    "exists",
    "contains",
)
DATE_OPERATORS = ("within", "older_than", "anniversary")


def _check_anniversary(value: str) -> str:
    if value == "today":
        return value
    try:
        return human_duration(duration_seconds(value))
    except ValueError:
        raise ValueError(
            f"anniversary is 'today' or a Duration such as 7d (the next 7 days), not '{value}'"
        ) from None


Anniversary = Annotated[
    str,
    AfterValidator(_check_anniversary),
    WithJsonSchema({"type": "string", "description": "'today' or a Duration, e.g. 7d"}),
]


def _one_operator(model: Strict, operators: tuple[str, ...], what: str) -> None:
    given = [name for name in operators if getattr(model, _field_name(name)) is not None]
    if len(given) != 1:
        listed = ", ".join(operators)
        found = f"; found {', '.join(given)}" if given else ""
        raise ValueError(f"{what} needs exactly one operator of: {listed}{found}")


def _field_name(operator: str) -> str:
    return "in_" if operator == "in" else operator


class Comparison(Strict):
    """`OP: VALUE` for event props in `performed.where` and for `count`."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    in_: ScalarList | None = Field(default=None, alias="in")
    not_in: ScalarList | None = None
    between: ScalarList | None = None
    exists: bool | None = None
    contains: Scalar | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Comparison:
        _one_operator(self, VALUE_OPERATORS, "a comparison")
        if self.between is not None and len(self.between) != 2:
            raise ValueError("between takes a list of two values: [low, high]")
        return self


class AttrCondition(Comparison):
    attr: str = Field(min_length=1)
    within: Duration | None = None
    older_than: Duration | None = None
    anniversary: Anniversary | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AttrCondition:
        _one_operator(self, VALUE_OPERATORS + DATE_OPERATORS, f"attr '{self.attr}'")
        if self.between is not None and len(self.between) != 2:
            raise ValueError("between takes a list of two values: [low, high]")
        return self


class TagCondition(Strict):
    tag: str = Field(min_length=1)


class Performed(Strict):
    event: EventName
    within: Duration | None = None
    count: Comparison | None = None
    where: dict[str, Comparison] | None = None


class PerformedCondition(Strict):
    performed: Performed


class SegmentCondition(Strict):
    segment: Name


class AllCondition(Strict):
    all_: list[Condition] = Field(alias="all", min_length=1)


class AnyCondition(Strict):
    any_: list[Condition] = Field(alias="any", min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")


CONDITION_KINDS = ("attr", "tag", "performed", "segment", "all", "any", "not")


def _choose_condition(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    present = [key for key in CONDITION_KINDS if key in value]
    return f"condition:{present[0]}" if len(present) == 1 else None


_CONDITION_MEMBERS: dict[str, Any] = {
    "condition:attr": AttrCondition,
    "condition:tag": TagCondition,
    "condition:performed": PerformedCondition,
    "condition:segment": SegmentCondition,
    "condition:all": AllCondition,
    "condition:any": AnyCondition,
    "condition:not": NotCondition,
}
if TYPE_CHECKING:
    Condition = (
        AttrCondition
        | TagCondition
        | PerformedCondition
        | SegmentCondition
        | AllCondition
        | AnyCondition
        | NotCondition
    )
else:
    Condition = tagged_union(
        _CONDITION_MEMBERS,
        _choose_condition,
        error="a condition needs exactly one of: attr, tag, performed, segment, all, any, not",
    )
for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()


class SegmentSpec(Strict):
    match: Condition


class PerUser(Strict):
    max: int = Field(ge=1)
    within: Duration | None = None


class ValidUntil(Strict):
    until: Timestamp


if TYPE_CHECKING:
    Validity = str | ValidUntil
else:
    Validity = tagged_union(
        {"validity:duration": Duration, "validity:until": ValidUntil},
        lambda value: "validity:until" if isinstance(value, dict) else "validity:duration",
        error="validity is a Duration (e.g. 30d) or {until: <timestamp>}",
    )

BenefitType = Literal["coupon", "cashback", "points", "fee_waiver", "gift", "rate_boost"]


class BenefitSpec(Strict):
    type: BenefitType
    value: float = Field(ge=0)
    unit: str = Field(min_length=1)
    stock: int | None = Field(default=None, ge=1)
    budget: float | None = Field(default=None, gt=0)
    per_user: PerUser | None = Field(default=None, alias="perUser")
    validity: Validity


LOCALE_PATTERN = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"


def _check_locale(value: str) -> str:
    if not re.match(LOCALE_PATTERN, value):
        raise ValueError(f"'{value}' is not a locale tag such as zh-CN or en")
    return value


Locale = Annotated[
    str,
    AfterValidator(_check_locale),
    WithJsonSchema({"type": "string", "pattern": LOCALE_PATTERN}),
]


class TemplateContent(Strict):
    subject: str | None = None
    body: str
    html: str | None = None


class TemplateSpec(Strict):
    channel: Channel
    marketing: bool = True
    content: dict[Locale, TemplateContent] = Field(min_length=1)


RuleAction = Literal["pass", "review", "reject"]
RULE_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
VELOCITY_BY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class ListCheck(Strict):
    list: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    key: Expression


class Velocity(Strict):
    of: Literal["grants", "sends", "events"]
    by: str = Field(default="user", pattern=VELOCITY_BY_PATTERN)
    max: int = Field(ge=1)
    within: Duration
    event: EventName | None = None

    @model_validator(mode="after")
    def _event_only_for_events(self) -> Velocity:
        if self.event is not None and self.of != "events":
            raise ValueError(
                "velocity 'event' narrows 'of: events' and cannot be used with " + self.of
            )
        return self


class VelocityCheck(Strict):
    velocity: Velocity


def _choose_risk_check(value: Any) -> str | None:
    if isinstance(value, dict) and "list" in value and "velocity" not in value:
        return "risk:list"
    if isinstance(value, dict) and "velocity" in value and "list" not in value:
        return "risk:velocity"
    return "risk:condition" if _choose_condition(value) else None


if TYPE_CHECKING:
    RiskCheck = ListCheck | VelocityCheck | Condition
else:
    RiskCheck = tagged_union(
        {"risk:list": ListCheck, "risk:velocity": VelocityCheck, "risk:condition": Condition},
        _choose_risk_check,
        error="a risk rule's 'if' is {list, key}, {velocity: ...} or a Segment condition",
    )


class RiskRule(Strict):
    id: str = Field(pattern=RULE_ID_PATTERN)
    if_: RiskCheck = Field(alias="if")
    then: RuleAction


class RiskPolicySpec(Strict):
    rules: list[RiskRule] = Field(min_length=1)
    default: RuleAction = "pass"


class QuietHours(Strict):
    start: TimeOfDay
    end: TimeOfDay
    action: Literal["delay", "skip"] = "delay"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        return self


class FrequencyRule(Strict):
    channel: ChannelOrAny
    max: int = Field(ge=1)
    per: Duration


def _check_pattern_compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"optOutPattern is not a valid regular expression: {exc}") from None
    return value


OptOutPattern = Annotated[
    str,
    AfterValidator(_check_pattern_compiles),
    WithJsonSchema({"type": "string", "format": "regex"}),
]


def _default_quiet_hours() -> QuietHours:
    return QuietHours(start="21:00", end="08:00", action="delay")


def _default_frequency() -> list[FrequencyRule]:
    return [
        FrequencyRule(channel="sms", max=3, per="7d"),
        FrequencyRule(channel="any", max=6, per="7d"),
    ]


class ContactPolicySpec(Strict):
    """A field left out takes the value shown in the spec; `quietHours: null` turns them off."""

    timezone: TimeZone = DEFAULT_TIMEZONE
    quiet_hours: QuietHours | None = Field(default_factory=_default_quiet_hours, alias="quietHours")
    frequency: list[FrequencyRule] = Field(default_factory=_default_frequency)
    # Each channel's default mode is in the channel list (`cjo.runtime.channels`).
    consent: dict[Channel, ConsentMode] = Field(default_factory=default_consent)
    opt_out_pattern: OptOutPattern = Field(default=DEFAULT_OPT_OUT_PATTERN, alias="optOutPattern")


DEFAULT_CONTACT_POLICY = ContactPolicySpec()

__all__ = [
    "AllCondition",
    "AnyCondition",
    "AttrCondition",
    "BenefitSpec",
    "Comparison",
    "Condition",
    "ContactPolicySpec",
    "DEFAULT_CONTACT_POLICY",
    "ListCheck",
    "NotCondition",
    "PerformedCondition",
    "RiskPolicySpec",
    "SegmentCondition",
    "SegmentSpec",
    "TagCondition",
    "TemplateSpec",
    "VelocityCheck",
]
