"""Value types shared by every kind: names, durations, times, expressions.

Each type validates with one clear message (no pydantic union noise) and
carries its own JSON Schema, so editors see the same rules the validator
applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, time
from typing import Annotated, Any, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, WithJsonSchema

# `Channel` is re-exported for the DSL's models; the list is `cjo.runtime.channels`.
from cjo.runtime.channels import Channel as Channel

NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
ACTIVITY_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"
EVENT_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"
DURATION_PATTERN = (
    r"^(?:(?:[0-9]+[wdhms])+"
    r"|P(?!$)(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+W)?(?:[0-9]+D)?"
    r"(?:T(?=[0-9])(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+S)?)?)$"
)
TIME_OF_DAY_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"

LIFECYCLE_STAGES = ("new", "growing", "mature", "dormant", "churned")

_SHORT_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# ISO 8601 years and months have no fixed length; journeys count them as 365 and 30 days.
_ISO_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "W": 604800, "D": 86400}
_ISO_TIME_UNITS = {"H": 3600, "M": 60, "S": 1}


class Strict(BaseModel):
    """Base of every DSL model: unknown fields are errors and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


def duration_seconds(text: str) -> int:
    """Seconds in a Duration (`3d`, `1h30m`, `P1W`, `PT12H`); ValueError if malformed or zero."""
    if not isinstance(text, str) or not re.match(DURATION_PATTERN, text):
        raise ValueError(f"'{text}' is not a duration: use e.g. 30s, 15m, 2h, 3d, 1w or P3D, PT12H")
    total = 0
    if text.startswith("P"):
        date_part, _, time_part = text[1:].partition("T")
        for amount, unit in re.findall(r"([0-9]+)([YMWD])", date_part):
            total += int(amount) * _ISO_UNITS[unit]
        for amount, unit in re.findall(r"([0-9]+)([HMS])", time_part):
            total += int(amount) * _ISO_TIME_UNITS[unit]
    else:
        for amount, unit in re.findall(r"([0-9]+)([wdhms])", text):
            total += int(amount) * _SHORT_UNITS[unit]
    if total <= 0:
        raise ValueError(f"duration '{text}' must be greater than zero")
    return total


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp that carries its UTC offset."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"'{text}' is not an ISO 8601 timestamp, e.g. 2026-12-01T09:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"timestamp '{text}' needs a UTC offset, e.g. +08:00")
    return value


def parse_time_of_day(text: str) -> time:
    if not isinstance(text, str) or not re.match(TIME_OF_DAY_PATTERN, text):
        raise ValueError(f"'{text}' is not a time of day: use \"HH:MM\" (24h), quoted")
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _check_pattern(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"'{value}' is not a valid {what}")
        return value

    return check


def human_duration(seconds: int) -> str:
    """The canonical spelling of a duration, in its largest whole unit up to days: 259200 -> 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_duration(value: str) -> str:
    # Stored canonically, so `72h`, `3d` and `P3D` mean (and hash) the same.
    return human_duration(duration_seconds(value))


def _check_timestamp(value: str) -> str:
    return parse_timestamp(value).isoformat()


def _check_time_of_day(value: str) -> str:
    parse_time_of_day(value)
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone, e.g. Asia/Shanghai") from None
    return value


def _check_expression(value: str) -> str:
    if not value.strip():
        raise ValueError("expression is empty")
    return value


Name = Annotated[
    str,
    AfterValidator(
        _check_pattern(NAME_PATTERN, "name (lowercase letters, digits and '-', 2-63 characters)")
    ),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN}),
]
StepId = Annotated[
    str,
    AfterValidator(
        _check_pattern(STEP_ID_PATTERN, "step id (lowercase letters, digits and '_', up to 63)")
    ),
    WithJsonSchema({"type": "string", "pattern": STEP_ID_PATTERN}),
]
# `next` and `on.*` also accept `end`; unknown targets are reported by the graph check (E201).
StepRef = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1})]
EventName = Annotated[
    str,
    AfterValidator(_check_pattern(EVENT_PATTERN, "event name")),
    WithJsonSchema({"type": "string", "pattern": EVENT_PATTERN}),
]
ActivityName = Annotated[
    str,
    AfterValidator(_check_pattern(ACTIVITY_PATTERN, "activity name")),
    WithJsonSchema({"type": "string", "pattern": ACTIVITY_PATTERN}),
]
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "30s, 15m, 2h, 3d, 1w, or ISO 8601 such as P3D, PT12H",
        }
    ),
]
Timestamp = Annotated[
    str,
    AfterValidator(_check_timestamp),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": "ISO 8601 with UTC offset"}
    ),
]
TimeOfDay = Annotated[
    str,
    AfterValidator(_check_time_of_day),
    WithJsonSchema({"type": "string", "pattern": TIME_OF_DAY_PATTERN}),
]
TimeZone = Annotated[
    str,
    AfterValidator(_check_timezone),
    WithJsonSchema({"type": "string", "description": "IANA time zone, e.g. Asia/Shanghai"}),
]
Expression = Annotated[
    str,
    AfterValidator(_check_expression),
    WithJsonSchema({"type": "string", "minLength": 1, "description": "a CEL expression"}),
]
ScalarValue = str | int | float | bool

_SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "number", "boolean"]}


def _check_scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError("must be a string, number or boolean")
    return value


def _check_scalar_list(value: Any) -> Any:
    if not isinstance(value, list) or not all(
        isinstance(v, str | int | float | bool) for v in value
    ):
        raise ValueError("must be a list of strings, numbers or booleans")
    return value


def _check_json_map(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("must be a mapping")
    return value


Scalar = Annotated[Any, AfterValidator(_check_scalar), WithJsonSchema(_SCALAR_SCHEMA)]
ScalarList = Annotated[
    Any,
    AfterValidator(_check_scalar_list),
    WithJsonSchema({"type": "array", "items": _SCALAR_SCHEMA}),
]
# `vars`, `set` and `with`: any YAML value; a string `${ expr }` is a CEL expression.
ValueMap = Annotated[
    Any,
    AfterValidator(_check_json_map),
    WithJsonSchema(
        {
            "type": "object",
            "description": "values are literals; a string '${ expr }' is a CEL expression",
        }
    ),
]

# Pydantic puts the tag of a discriminated union into error locations. Our tags
# carry a ':' so the error mapper can tell them from the document's own keys.
UNION_TAGS: dict[str, type[BaseModel] | None] = {}


def tagged_union(
    members: Mapping[str, Any], choose: Callable[[Any], str | None], *, error: str
) -> Any:
    """An Annotated union whose member is picked by `choose(value)` (a key of `members`)."""
    for tag, member in members.items():
        UNION_TAGS[tag] = member if isinstance(member, type) else None
    options = tuple(Annotated[member, Tag(tag)] for tag, member in members.items())

    def choose_input_or_model(value: Any) -> str | None:
        # Validation sees YAML data; serialisation sees the models themselves.
        if isinstance(value, BaseModel):
            for tag, member in members.items():
                if isinstance(member, type) and isinstance(value, member):
                    return tag
            nested = [tag for tag, member in members.items() if not isinstance(member, type)]
            return nested[0] if nested else None
        return choose(value)

    return Annotated[
        _union(options),
        Discriminator(
            choose_input_or_model, custom_error_type="union_choice", custom_error_message=error
        ),
    ]


def _union(options: tuple[Any, ...]) -> Any:
    return Union[options]  # noqa: UP007 - built at run time from Annotated members
