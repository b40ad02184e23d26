"""Pure, deterministic rules the interpreter applies: hashing, clocks, expression contexts.

Nothing here reads the clock, the network or randomness: the same inputs give the same
answers on every replay.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cjo.dsl import Plan


def bucket(*parts: str, buckets: int) -> int:
    """A stable number in [0, buckets) for the parts: the same user always lands alike."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def in_holdout(plan: Plan, user_id: str) -> bool:
    """Holdout is a stable share of users: basis points keep fractional percents exact."""
    if plan.holdout_percent <= 0:
        return False
    share = round(plan.holdout_percent * 100)
    return bucket(plan.journey.name, "holdout", user_id, buckets=10_000) < share


def pick_variant(journey: str, step_id: str, user_id: str, variants: list[dict[str, Any]]) -> str:
    """The split's variant: a pure function of (journey, step, user), weighted."""
    total = sum(int(variant["weight"]) for variant in variants)
    point = bucket(journey, step_id, user_id, buckets=total)
    for variant in variants:
        point -= int(variant["weight"])
        if point < 0:
            return str(variant["name"])
    return str(variants[-1]["name"])


def zone_of(user_timezone: str | None, fallback: str) -> ZoneInfo:
    for name in (user_timezone, fallback):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("Asia/Shanghai")


def next_time_of_day(now: datetime, hhmm: str, zone: ZoneInfo) -> datetime:
    """The next moment the clock reads `hhmm` in `zone` (now itself if it reads it exactly)."""
    hours, minutes = (int(part) for part in hhmm.split(":"))
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), time(hours, minutes), tzinfo=zone)
    if candidate < local:
        candidate = datetime.combine(
            local.date() + timedelta(days=1), time(hours, minutes), tzinfo=zone
        )
    return candidate


_CRON_NAMES = {
    3: {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    4: {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron_field(text: str, index: int) -> set[int]:
    low, high = _CRON_RANGES[index]
    names = _CRON_NAMES.get(index, {})
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, stop = low, high
        else:
            first, _, last = base.partition("-")
            start = _cron_number(first, names)
            if last:
                stop = _cron_number(last, names)
            else:
                stop = high if step_text else start
        values.update(range(start, stop + 1, step))
    if index == 4 and 7 in values:  # Sunday is 0 or 7
        values.add(0)
    return values


def _cron_number(text: str, names: dict[str, int]) -> int:
    # The DSL validated the expression already; names and digits are all that remain.
    return int(text) if text.isdigit() else names[text.upper()]


def next_cron_fire(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first moment after `after` that five-field cron `expression` names, in `zone`."""
    fields = _CRON_MACROS.get(expression.strip(), expression).split()
    minutes, hours, days, months, weekdays = (_cron_field(f, i) for i, f in enumerate(fields))
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"
    local = after.astimezone(zone)
    for offset in range(0, 366 * 5):
        day = local.date() + timedelta(days=offset)
        if day.month not in months:
            continue
        weekday = (day.weekday() + 1) % 7  # cron counts from Sunday = 0
        by_month, by_week = day.day in days, weekday in weekdays
        # Cron's rule: when both day fields are restricted, either one may match.
        if any_day and any_weekday:
            matches = True
        elif any_day:
            matches = by_week
        elif any_weekday:
            matches = by_month
        else:
            matches = by_month or by_week
        if not matches:
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
                if candidate > local:
                    return candidate
    raise ValueError(f"cron '{expression}' never fires")
