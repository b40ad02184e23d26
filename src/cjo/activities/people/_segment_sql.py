"""Segment conditions translated to one SQL predicate over `profiles` (SQLAlchemy Core).

The predicate is used in a `WHERE` over the unaliased `profiles` table, so `performed`
conditions correlate with it. Built-in fields are columns; any other attribute is a key of
the `attrs` JSONB, read by type (see `_segment_compare`).

SQL is three-valued and a segment is not: a comparison on a missing value is NULL, which
a bare `NOT` would keep NULL and so drop. Each translated node says whether it may be NULL,
and `not` of such a node becomes `IS NOT TRUE`, so `not: {attr: aum, gte: 50000}` includes
people with no `aum`. Non-null nodes keep a plain `NOT`, which lets PostgreSQL plan
`NOT EXISTS` as an anti-join.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from cjo.activities._base import utc
from cjo.activities.people._segment_compare import (
    COMPARATORS,
    InvalidConditionError,
    JsonValue,
    Predicate,
    SegmentCycleError,
    SegmentError,
    UnknownSegmentError,
    as_text,
    operator_of,
)
from cjo.dsl import SegmentSpec
from cjo.dsl._resources import (
    AllCondition,
    AnyCondition,
    AttrCondition,
    Comparison,
    NotCondition,
    Performed,
    PerformedCondition,
    SegmentCondition,
    TagCondition,
)
from cjo.dsl._types import duration_seconds
from cjo.store.schema import Event, Profile

__all__ = [
    "EVENTS",
    "PROFILES",
    "InvalidConditionError",
    "Predicate",
    "SegmentCycleError",
    "SegmentError",
    "SegmentResolver",
    "UnknownSegmentError",
    "named_segment_filter",
    "segment_filter",
]

PROFILES: sa.Table = SQLModel.metadata.tables[str(Profile.__tablename__)]
EVENTS: sa.Table = SQLModel.metadata.tables[str(Event.__tablename__)]

SegmentResolver = Callable[[str], SegmentSpec]

_TEXT_FIELDS = frozenset({"id", "name", "phone", "email", "locale", "timezone", "lifecycle"})
_DATE_FIELDS = frozenset({"birthday"})
_TIMESTAMP_FIELDS = frozenset({"created_at"})


@dataclass(frozen=True, slots=True)
class _Node:
    clause: Predicate
    nullable: bool


@dataclass
class _Translator:
    now: datetime
    zone: ZoneInfo
    resolve: SegmentResolver | None
    _visiting: list[str] = field(default_factory=list)

    def node(self, condition: Any) -> _Node:
        if isinstance(condition, AllCondition):
            parts = [self.node(child) for child in condition.all_]
            return _Node(sa.and_(*(p.clause for p in parts)), any(p.nullable for p in parts))
        if isinstance(condition, AnyCondition):
            parts = [self.node(child) for child in condition.any_]
            return _Node(sa.or_(*(p.clause for p in parts)), any(p.nullable for p in parts))
        if isinstance(condition, NotCondition):
            inner = self.node(condition.not_)
            negated = inner.clause.is_not(sa.true()) if inner.nullable else sa.not_(inner.clause)
            return _Node(negated, False)
        if isinstance(condition, TagCondition):
            return _Node(PROFILES.c.tags.contains(_text_array([condition.tag])), False)
        if isinstance(condition, PerformedCondition):
            return _Node(self.performed(condition.performed), False)
        if isinstance(condition, SegmentCondition):
            return self.segment(condition.segment)
        if isinstance(condition, AttrCondition):
            return self.attr(condition)
        raise InvalidConditionError(f"not a segment condition: {condition!r}")

    def segment(self, name: str) -> _Node:
        if name in self._visiting:
            loop = " → ".join([*self._visiting[self._visiting.index(name) :], name])
            raise SegmentCycleError(f"segment references form a cycle: {loop}")
        if self.resolve is None:
            raise UnknownSegmentError(f"segment '{name}' is referenced but no resolver was given")
        try:
            spec = self.resolve(name)
        except LookupError:
            raise UnknownSegmentError(f"unknown segment '{name}'") from None
        self._visiting.append(name)
        try:
            return self.node(spec.match)
        finally:
            self._visiting.pop()

    def attr(self, condition: AttrCondition) -> _Node:
        name = condition.attr
        if name == "tags":
            return _tags(condition)
        if name in _TEXT_FIELDS:
            return _column(PROFILES.c[name], condition, as_text, text=True)
        if name in _DATE_FIELDS:
            return self.dated(PROFILES.c[name], PROFILES.c[name], condition, _as_date)
        if name in _TIMESTAMP_FIELDS:
            column = PROFILES.c[name]
            local: ColumnElement[Any] = sa.func.timezone(self.zone.key, column)
            return self.dated(column, local, condition, self.as_timestamp)
        json_value = JsonValue(PROFILES.c.attrs, name)
        if _date_operator(condition):
            local = json_value.local_timestamp(self.zone.key)
            moment = sa.func.timezone(self.zone.key, local)
            return self.dated(moment, local, condition, self.as_timestamp)
        return _Node(json_value.compare(condition), True)

    def dated(
        self,
        value: ColumnElement[Any],
        local: ColumnElement[Any],
        condition: AttrCondition,
        convert: Callable[[Any, str], Any],
    ) -> _Node:
        """Date operators, or plain comparisons with the value read as this field's type."""
        if condition.within is not None:
            since, until = self.window(value, condition.within)
            return _Node(sa.and_(value >= since, value <= until), True)
        if condition.older_than is not None:
            since, _ = self.window(value, condition.older_than)
            return _Node(value < since, True)
        if condition.anniversary is not None:
            return _Node(self.anniversary(local, condition.anniversary), True)
        return _column(value, condition, convert)

    def window(self, value: ColumnElement[Any], duration: str) -> tuple[Any, Any]:
        since = self.now - timedelta(seconds=duration_seconds(duration))
        if isinstance(value.type, sa.Date):
            return since.astimezone(self.zone).date(), self.now.astimezone(self.zone).date()
        return since, self.now

    def anniversary(self, local: ColumnElement[Any], anniversary: str) -> Predicate:
        """Month and day fall in [today, today + Duration], in the business line's zone.

        Matching on a list of `MMDD` strings makes the year wrap free; a 29 February
        falls on the 28th in years that have none. The day itself is not its own
        anniversary, so only values from before today match.
        """
        today = self.now.astimezone(self.zone).date()
        last = today
        if anniversary != "today":
            later = self.now + timedelta(seconds=duration_seconds(anniversary))
            last = later.astimezone(self.zone).date()
        days: set[str] = set()
        day = today
        while day <= last and len(days) < 366:
            days.add(day.strftime("%m%d"))
            if day.month == 2 and day.day == 28 and not _is_leap(day.year):
                days.add("0229")
            day += timedelta(days=1)
        as_date = sa.cast(local, sa.Date)
        return sa.and_(
            sa.func.to_char(local, "MMDD") == sa.any_(_text_array(sorted(days))),
            as_date < today,
        )

    def performed(self, performed: Performed) -> Predicate:
        events = EVENTS.alias("performed_events")
        where: list[Predicate] = [
            events.c.user_id == PROFILES.c.id,
            events.c.name == performed.event,
            events.c.ts <= self.now,
        ]
        if performed.within is not None:
            since = self.now - timedelta(seconds=duration_seconds(performed.within))
            where.append(events.c.ts >= since)
        for prop, comparison in (performed.where or {}).items():
            where.append(JsonValue(events.c.props, prop).compare(comparison))
        matching = sa.select(sa.literal(1)).select_from(events).where(*where).correlate(PROFILES)
        count = performed.count
        if count is None or _at_least(count) == 1:
            return sa.exists(matching)
        return _count_condition(matching, count)

    def as_timestamp(self, raw: Any, what: str) -> datetime:
        if isinstance(raw, str):
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                pass
            else:
                return moment if moment.tzinfo else moment.replace(tzinfo=self.zone)
        raise InvalidConditionError(
            f"{what} compares a timestamp; give one like 2026-01-31T09:00:00+08:00"
        )


def segment_filter(
    condition: Any,
    *,
    now: datetime,
    timezone: str,
    resolve: SegmentResolver | None = None,
) -> Predicate:
    """A WHERE clause over `profiles` that holds exactly for the members (NULL = not one).

    `now` stands for the clock (results are reproducible); `timezone` is the business
    line's, for dates and anniversaries; `resolve` turns `{segment: NAME}` into its spec
    and raises LookupError for an unknown name.
    """
    return _Translator(utc(now), ZoneInfo(timezone), resolve).node(condition).clause


def named_segment_filter(
    name: str, *, now: datetime, timezone: str, resolve: SegmentResolver
) -> Predicate:
    """`segment_filter` for the segment `resolve` knows as `name` (cycles through it found)."""
    return _Translator(utc(now), ZoneInfo(timezone), resolve).segment(name).clause


def _column(
    column: ColumnElement[Any],
    condition: AttrCondition,
    convert: Callable[[Any, str], Any],
    *,
    text: bool = False,
) -> _Node:
    operator, raw = operator_of(condition)
    what = f"attr '{condition.attr}'"
    nullable = bool(getattr(column, "nullable", True))
    if operator == "exists":
        return _Node(column.is_not(None) if raw else column.is_(None), False)
    if operator in ("in", "not_in"):
        values = [convert(item, what) for item in raw]
        if not values:
            return _Node(sa.false() if operator == "in" else column.is_not(None), False)
        clause = column.in_(values) if operator == "in" else column.not_in(values)
        return _Node(clause, nullable)
    if operator == "between":
        low, high = (convert(item, what) for item in raw)
        return _Node(column.between(low, high), nullable)
    if operator == "contains":
        if not text:
            raise InvalidConditionError(f"contains needs a text field, and {what} is not one")
        return _Node(sa.func.strpos(column, convert(raw, what)) > 0, nullable)
    return _Node(COMPARATORS[operator](column, convert(raw, what)), nullable)


def _tags(condition: AttrCondition) -> _Node:
    operator, value = operator_of(condition)
    tags = PROFILES.c.tags
    if operator == "contains":
        return _Node(tags.contains(_text_array([as_text(value, "tags")])), False)
    if operator in ("in", "not_in"):
        overlap = tags.overlap(_text_array([as_text(v, "tags") for v in value]))
        return _Node(overlap if operator == "in" else sa.not_(overlap), False)
    if operator == "exists":
        present = sa.func.cardinality(tags) > 0
        return _Node(present if value else sa.not_(present), False)
    raise InvalidConditionError(
        f"tags take contains, in, not_in or exists, not '{operator}' (or use {{tag: NAME}})"
    )


def _date_operator(condition: AttrCondition) -> bool:
    return any(
        value is not None
        for value in (condition.within, condition.older_than, condition.anniversary)
    )


def _at_least(count: Comparison) -> int | None:
    """N when `count` says "N or more" (gte N, gt N-1), else None."""
    if isinstance(count.gte, int) and not isinstance(count.gte, bool):
        return count.gte
    if isinstance(count.gt, int) and not isinstance(count.gt, bool):
        return count.gt + 1
    return None


def _count_condition(matching: sa.Select[Any], count: Comparison) -> Predicate:
    operator, value = operator_of(count)
    numbers = value if isinstance(value, list) else [value]
    if operator in ("exists", "contains") or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        raise InvalidConditionError("a performed count compares numbers: e.g. {gte: 2}")
    at_least = _at_least(count)
    if at_least is not None:
        # Stop counting at N: "N or more" never needs a user's whole history.
        matching = matching.limit(at_least)
    total = sa.select(sa.func.count()).select_from(matching.subquery()).scalar_subquery()
    if operator in COMPARATORS:
        return COMPARATORS[operator](total, value)
    if operator == "in":
        return total.in_(value)
    if operator == "not_in":
        return total.not_in(value)
    return total.between(value[0], value[1])


def _text_array(values: list[str]) -> ColumnElement[Any]:
    return sa.cast(sa.literal(values, ARRAY(sa.Text)), ARRAY(sa.Text))


def _as_date(raw: Any, what: str) -> date:
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise InvalidConditionError(f"{what} compares a date; give one like 1990-01-31")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
