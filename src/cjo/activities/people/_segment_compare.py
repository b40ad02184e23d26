"""Comparing one value: the operators, JSON keys read by type, and the segment errors.

A key of a JSONB column (`attrs`, an event's `props`) is read only as the JSON type the
YAML value has: a number numerically, a string as text, a bool as bool. The reads are
guarded casts (`CASE WHEN jsonb_typeof(...) = 'number' THEN ...::numeric END`), so a
value of another type is NULL, does not match, and never raises a cast error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from cjo.activities._base import ActivityError
from cjo.dsl._resources import Comparison

Predicate = ColumnElement[bool]

# An offset at the end of a string that also has a time of day: `...T10:00:00+08:00`, `...Z`.
HAS_OFFSET = r"[T ][0-9:.]+([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"
COMPARATORS: dict[str, Callable[[Any, Any], Predicate]] = {
    "eq": lambda left, right: left == right,
    "ne": lambda left, right: left != right,
    "gt": lambda left, right: left > right,
    "gte": lambda left, right: left >= right,
    "lt": lambda left, right: left < right,
    "lte": lambda left, right: left <= right,
}


class SegmentError(ActivityError):
    """A segment that cannot be evaluated as written."""


class UnknownSegmentError(SegmentError):
    """A `{segment: NAME}` reference the caller could not resolve."""


class SegmentCycleError(SegmentError):
    """Segments that reference each other in a loop."""


class InvalidConditionError(SegmentError):
    """A condition whose operator or value does not fit the field it compares."""


@dataclass(frozen=True, slots=True)
class JsonValue:
    """One key of a JSONB column, read only as the JSON type a comparison asks for."""

    container: ColumnElement[Any]
    key: str

    @property
    def raw(self) -> ColumnElement[Any]:
        return self.container[self.key]

    @property
    def text(self) -> ColumnElement[Any]:
        text: ColumnElement[Any] = self.container[self.key].astext
        return text

    @property
    def kind(self) -> ColumnElement[str]:
        return sa.func.jsonb_typeof(self.raw)

    def typed(self, sample: Any) -> ColumnElement[Any]:
        """NULL unless the stored JSON has the type of `sample` (a YAML scalar)."""
        target: sa.types.TypeEngine[Any]
        if isinstance(sample, bool):
            kind, target = "boolean", sa.Boolean()
        elif isinstance(sample, int | float):
            kind, target = "number", sa.Numeric()
        else:
            return sa.case((self.kind == "string", self.text))
        return sa.case((self.kind == kind, sa.cast(self.text, target)))

    def compare(self, condition: Comparison) -> Predicate:
        operator, value = operator_of(condition)
        if operator == "eq":
            # Containment is typed by JSON itself and can use the GIN index on attrs.
            return self.container.contains({self.key: value})
        if operator in COMPARATORS:
            return COMPARATORS[operator](self.typed(value), _scalar(value))
        if operator == "in":
            return sa.or_(sa.false(), *(self.container.contains({self.key: v}) for v in value))
        if operator == "not_in":
            return sa.or_(
                sa.false(),
                *(self.typed(group[0]).not_in(group) for group in _by_json_type(value)),
            )
        if operator == "between":
            low, high = value
            return sa.and_(self.typed(low) >= _scalar(low), self.typed(high) <= _scalar(high))
        if operator == "exists":
            present = sa.func.coalesce(self.kind, "null") != "null"
            return present if value else sa.not_(present)
        if operator == "contains":
            in_array = sa.and_(self.kind == "array", self.raw.contains(_json_array([value])))
            if not isinstance(value, str):
                return in_array
            in_text = sa.and_(self.kind == "string", sa.func.strpos(self.text, value) > 0)
            return sa.or_(in_array, in_text)
        raise InvalidConditionError(f"'{operator}' does not apply to '{self.key}'")

    def local_timestamp(self, zone: str) -> ColumnElement[Any]:
        """The value as a wall-clock time in `zone`; strings without an offset already are."""
        valid = sa.and_(self.kind == "string", sa.func.pg_input_is_valid(self.text, "timestamp"))
        with_offset = sa.func.timezone(zone, sa.cast(self.text, sa.DateTime(timezone=True)))
        return sa.case(
            (sa.and_(valid, self.text.regexp_match(HAS_OFFSET)), with_offset),
            (valid, sa.cast(self.text, sa.DateTime())),
        )


def operator_of(condition: Comparison) -> tuple[str, Any]:
    for name in ("eq", "ne", "gt", "gte", "lt", "lte", "not_in", "between", "exists"):
        value = getattr(condition, name)
        if value is not None:
            return name, value
    if condition.in_ is not None:
        return "in", condition.in_
    if condition.contains is not None:
        return "contains", condition.contains
    raise InvalidConditionError("a comparison needs an operator")


def as_text(raw: Any, what: str) -> str:
    if isinstance(raw, str):
        return raw
    raise InvalidConditionError(f"{what} is text; quote the value {raw!r}")


def _by_json_type(values: Sequence[Any]) -> list[list[Any]]:
    """Values grouped as JSON types them: booleans, numbers (int and float alike), strings."""
    groups: dict[str, list[Any]] = {}
    for value in values:
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int | float):
            kind = "number"
        else:
            kind = "string"
        groups.setdefault(kind, []).append(value)
    return list(groups.values())


def _scalar(value: Any) -> ColumnElement[Any]:
    """A YAML scalar as a bound value; numbers as NUMERIC so no float rounding creeps in."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return sa.literal(Decimal(str(value)), sa.Numeric())
    return sa.literal(value)


def _json_array(values: list[Any]) -> ColumnElement[Any]:
    return sa.cast(sa.literal(json.dumps(values), sa.Text), JSONB)
