"""The checks a RiskPolicy's rules make, each one SQL statement for a page of users.

List keys are CEL, evaluated here on each user's profile and then looked up together;
velocity counts come from one correlated query; Segment conditions are the segment
translator's predicate over the page's ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from cjo.activities.people._segment_sql import PROFILES, SegmentResolver, segment_filter
from cjo.dsl import evaluate_expression
from cjo.dsl._resources import ListCheck, Velocity
from cjo.dsl._types import duration_seconds
from cjo.runtime.log import mask
from cjo.store.schema import Consent, RiskListEntry

LISTS: sa.Table = SQLModel.metadata.tables[str(RiskListEntry.__tablename__)]
CONSENTS: sa.Table = SQLModel.metadata.tables[str(Consent.__tablename__)]

# What each velocity `of` counts: table, time column, and the rows that count.
_SOURCES: dict[str, tuple[str, str, str]] = {
    "grants": ("grants", "granted_at", "s.business_line = :business_line"),
    "sends": (
        "messages",
        "created_at",
        "s.business_line = :business_line AND s.status <> 'suppressed'",
    ),
    "events": ("events", "ts", "(CAST(:event AS text) IS NULL OR s.name = :event)"),
}
# Who shares a user's `by` value. A user with no value shares it with nobody but themself.
_PEERS: dict[str, str] = {
    "user": "",
    "phone": "UNION SELECT peer.id FROM profiles peer WHERE peer.phone = me.phone",
    "attrs": (
        "UNION SELECT peer.id FROM profiles peer"
        " WHERE jsonb_typeof(me.attrs -> :by) <> 'null'"
        " AND peer.attrs @> jsonb_build_object(CAST(:by AS text), me.attrs -> :by)"
    ),
}
_VELOCITY = """
SELECT asked.user_id, (
    SELECT count(*) FROM {table} s
    WHERE s.{moment} >= :since AND s.{moment} <= :at AND {rows}
      AND s.user_id IN (SELECT asked.user_id {peers})
) AS total
FROM unnest(CAST(:ids AS text[])) AS asked(user_id)
LEFT JOIN profiles me ON me.id = asked.user_id
"""
# The profile table holds the fields of the DSL's `user` root, less consents (their own table).
_PROFILE_FIELDS = tuple(column.name for column in PROFILES.columns if column.name != "updated_at")


@dataclass
class Findings:
    """What a policy's rules found, per user: matched rule ids in rule order, and why."""

    matched: dict[str, list[str]] = field(default_factory=dict)
    detail: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hit(self, user_id: str, rule_id: str, kind: str, note: Any) -> None:
        self.matched.setdefault(user_id, []).append(rule_id)
        self.note(user_id, kind, rule_id, note)

    def note(self, user_id: str, kind: str, rule_id: str, note: Any) -> None:
        self.detail.setdefault(user_id, {}).setdefault(kind, {})[rule_id] = note


async def check_list(
    connection: AsyncConnection,
    rule_id: str,
    check: ListCheck,
    business_line: str,
    variables: Mapping[str, Mapping[str, Any]],
    findings: Findings,
) -> None:
    """`variables[user_id]` are the CEL roots to evaluate the key with for that user."""
    keys: dict[str, str] = {}
    for user_id, roots in variables.items():
        try:
            value = evaluate_expression(check.key, roots)
        except Exception as error:  # CEL raises many types; each one means "no key"
            findings.note(user_id, "errors", rule_id, f"{type(error).__name__}: {error}")
            continue
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            keys[user_id] = str(value)
    if not keys:
        return
    listed = await connection.execute(
        sa.select(LISTS.c.value).where(
            LISTS.c.business_line == business_line,
            LISTS.c.list == check.list,
            LISTS.c.value == sa.any_(texts(sorted(set(keys.values())))),
        )
    )
    hits = set(listed.scalars())
    for user_id, value in keys.items():
        if value in hits:
            findings.hit(user_id, rule_id, "lists", {"list": check.list, "value": mask(value)})


async def check_velocity(
    connection: AsyncConnection,
    rule_id: str,
    velocity: Velocity,
    *,
    business_line: str,
    at: datetime,
    user_ids: list[str],
    findings: Findings,
) -> None:
    table, moment, rows = _SOURCES[velocity.of]
    peers = _PEERS.get(velocity.by, _PEERS["attrs"])
    statement = sa.text(_VELOCITY.format(table=table, moment=moment, rows=rows, peers=peers))
    counted = await connection.execute(
        statement,
        {
            "ids": user_ids,
            "since": at - timedelta(seconds=duration_seconds(velocity.within)),
            "at": at,
            "business_line": business_line,
            "event": velocity.event,
            "by": velocity.by,
        },
    )
    for user_id, total in counted.all():
        findings.note(user_id, "counts", rule_id, total)
        if total >= velocity.max:
            findings.hit(user_id, rule_id, "velocity", total)


async def check_condition(
    connection: AsyncConnection,
    rule_id: str,
    condition: Any,
    *,
    at: datetime,
    timezone: str,
    resolve: SegmentResolver,
    user_ids: list[str],
    findings: Findings,
) -> None:
    predicate = segment_filter(condition, now=at, timezone=timezone, resolve=resolve)
    asked = PROFILES.c.id == sa.any_(texts(user_ids))
    hits = await connection.execute(sa.select(PROFILES.c.id).where(asked, predicate))
    for user_id in hits.scalars():
        findings.hit(user_id, rule_id, "conditions", True)


async def load_profiles(
    connection: AsyncConnection, user_ids: set[str]
) -> dict[str, dict[str, Any]]:
    """The CEL `user` of each of these users, as the DSL describes it."""
    if not user_ids:
        return {}
    ids = texts(sorted(user_ids))
    profiles: dict[str, dict[str, Any]] = {}
    for user_id in user_ids:
        profile: dict[str, Any] = dict.fromkeys(_PROFILE_FIELDS)
        profiles[user_id] = {**profile, "id": user_id, "tags": [], "attrs": {}, "addresses": {}}
    found = await connection.execute(sa.select(PROFILES).where(PROFILES.c.id == sa.any_(ids)))
    for row in found.mappings():
        profile = {key: row[key] for key in _PROFILE_FIELDS}
        # CEL has no date type; an ISO date string still compares and prints sensibly.
        profile["birthday"] = row["birthday"].isoformat() if row["birthday"] else None
        profiles[row["id"]] = profile
    for profile in profiles.values():
        profile["consents"] = {}
    consents = await connection.execute(
        sa.select(CONSENTS.c.user_id, CONSENTS.c.channel, CONSENTS.c.granted).where(
            CONSENTS.c.user_id == sa.any_(ids)
        )
    )
    for user_id, channel, granted in consents.all():
        profiles[user_id]["consents"][channel] = granted
    return profiles


def texts(values: Sequence[str]) -> Any:
    return sa.literal(list(values), ARRAY(sa.Text))
