"""Pure, deterministic rules of a run: who is held out, which variant, which clock.

Nothing here reads the clock, the network or randomness: the same inputs give the same
answers on every replay, for one user or a page of them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cjo.dsl import Plan
from cjo.dsl.plan import PlanVariant


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


def pick_variant(journey: str, step_id: str, user_id: str, variants: list[PlanVariant]) -> str:
    """The split's variant: a pure function of (journey, step, user), weighted."""
    total = sum(variant.weight for variant in variants)
    point = bucket(journey, step_id, user_id, buckets=total)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant.name
    return variants[-1].name


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
