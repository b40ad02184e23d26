"""How a profile changes over its life: the journey's `update` step and lifecycle stages.

**The `update` step** (`apply_updates`, run as `profiles.update`) writes evaluated values:
`locale`, `timezone` and `lifecycle` go to their columns, any other name to `attrs` (null
removes the attribute); tags are added and removed in SQL, each kept once. It runs once per
request key: the receipt is stored in the same transaction as the change.

**Lifecycle stages** (`refresh`, run as `profiles.refresh_lifecycle`): a user's stage at
the moment `at` follows from their profile's `created_at` and their events up to `at`
(events after `at` are ignored, so a refresh "as of" a past moment is reproducible). "Last
seen" is the later of the last event and `created_at`: opening an account counts as a sign
of life, so a customer without events yet is not churned on their first day. The first
rule that matches wins (defaults in brackets, all in `LifecycleRules`):

1. **new**: created within the last `new_days` [30] days.
2. **churned**: last seen `churned_days` [180] days ago or more.
3. **dormant**: last seen `dormant_days` [90] days ago or more.
4. **mature**: a customer for more than `mature_days` [365] days with at least
   `mature_events` [10] events in the last `recent_days` [90] days.
5. **growing**: everyone else (active, but young or not yet busy).

The refresh overwrites stages set by upserts or `update` steps: the rules own the field.
One statement computes every stage and writes only the rows whose stage changes. See also
docs/lifecycle.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities._base import ActivityError
from cjo.activities.calls.runner import Receipt, describe, run_once
from cjo.dsl import READ_ONLY_PROFILE_FIELDS, WRITABLE_PROFILE_FIELDS
from cjo.steps.contracts import (
    ProfileUpdate,
    ProfileUpdateOutcome,
    UpdateProfilesInput,
    UpdateProfilesResult,
)
from cjo.steps.run import Contract, Moment

Stage = Literal["new", "growing", "mature", "dormant", "churned"]
STAGES: tuple[Stage, ...] = ("new", "growing", "mature", "dormant", "churned")

Key = TypeVar("Key")


def _iana_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone, e.g. Asia/Shanghai") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_iana_time_zone)]
Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)]


class InvalidProfileUpdateError(ActivityError):
    pass


class _WritableColumns(Contract):
    locale: Locale = "zh-CN"
    timezone: TimeZoneName | None = None
    lifecycle: Stage = "new"


def split_nulls(values: Mapping[Key, Any]) -> tuple[dict[Key, Any], list[Key]]:
    """The entries to write and the keys to remove (those given as null)."""
    kept = {key: value for key, value in values.items() if value is not None}
    return kept, [key for key, value in values.items() if value is None]


async def apply_updates(
    connection: AsyncConnection, data: UpdateProfilesInput
) -> UpdateProfilesResult:
    """Apply each key's update once (call inside a transaction); results in request order."""
    first_of_key: dict[str, dict[str, Any]] = {}
    for request in data.requests:
        if request.key not in first_of_key:
            first_of_key[request.key] = _update_row(request)

    async def apply(keys: list[str]) -> dict[str, Receipt]:
        fresh, applied = set(keys), set[str]()
        # In request order: two changes to one user in a page apply as they were asked.
        for round_ in _rounds([row for key, row in first_of_key.items() if key in fresh]):
            rows = await connection.execute(_UPDATE, {"rows": json.dumps(round_)})
            applied.update(rows.scalars())
        return {key: {"outcome": "done", "applied": key in applied} for key in keys}

    receipts = await run_once(connection, "profiles.update", list(first_of_key), apply)
    return UpdateProfilesResult(
        results=[
            ProfileUpdateOutcome(key=request.key, **receipts[request.key])
            for request in data.requests
        ]
    )


def _update_row(request: ProfileUpdate) -> dict[str, Any]:
    """The request as the UPDATE reads it; bad values stop the whole page before any write."""
    read_only = sorted(READ_ONLY_PROFILE_FIELDS.intersection(request.set))
    if read_only:
        raise InvalidProfileUpdateError(
            f"update {request.key}: {', '.join(read_only)} cannot be set by a journey"
        )
    given_columns = {k: v for k, v in request.set.items() if k in WRITABLE_PROFILE_FIELDS}
    try:
        columns = _WritableColumns.model_validate(given_columns)
    except ValidationError as error:
        raise InvalidProfileUpdateError(f"update {request.key}: {describe(error)}") from None
    attrs, drop_attrs = split_nulls(
        {k: v for k, v in request.set.items() if k not in WRITABLE_PROFILE_FIELDS}
    )
    try:
        # Dates and the like are stored the way Temporal's JSON payloads would carry them.
        attrs = to_jsonable_python(attrs)
    except PydanticSerializationError as error:
        raise InvalidProfileUpdateError(f"update {request.key}: not JSON: {error}") from None
    return {
        "key": request.key,
        "user_id": request.user_id,
        "at": request.at.isoformat(),
        "columns": columns.model_dump(mode="json", exclude_unset=True),
        "attrs": attrs,
        "drop_attrs": drop_attrs,
        "tags_add": request.tags_add,
        "tags_remove": request.tags_remove,
    }


def _rounds(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows split so no user appears twice in a round: an UPDATE changes a row only once."""
    rounds: list[list[dict[str, Any]]] = []
    seen: Counter[str] = Counter()
    for row in rows:
        position = seen[row["user_id"]]
        seen[row["user_id"]] += 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(row)
    return rounds


class LifecycleRules(Contract):
    new_days: int = Field(default=30, ge=1)
    dormant_days: int = Field(default=90, ge=1)
    churned_days: int = Field(default=180, ge=1)
    mature_days: int = Field(default=365, ge=1)
    mature_events: int = Field(default=10, ge=1)
    recent_days: int = Field(default=90, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleRules:
        if self.dormant_days >= self.churned_days:
            raise ValueError("dormant_days must be fewer than churned_days")
        return self


class RefreshLifecycleInput(Contract):
    at: Moment
    rules: LifecycleRules = Field(default_factory=LifecycleRules)


class RefreshLifecycleResult(Contract):
    """`users`: how many profiles are in each stage now; `changed`: how many moved into it."""

    users: dict[Stage, int]
    changed: dict[Stage, int]


async def refresh(
    connection: AsyncConnection, data: RefreshLifecycleInput
) -> RefreshLifecycleResult:
    """Recompute every profile's stage as of `data.at` (call inside a transaction)."""
    rules, at = data.rules, data.at
    rows = await connection.execute(
        _REFRESH,
        {
            "at": at,
            "new_since": at - timedelta(days=rules.new_days),
            "churned_before": at - timedelta(days=rules.churned_days),
            "dormant_before": at - timedelta(days=rules.dormant_days),
            "mature_before": at - timedelta(days=rules.mature_days),
            "mature_events": rules.mature_events,
            "recent_since": at - timedelta(days=rules.recent_days),
        },
    )
    tallies: dict[str, dict[Stage, int]] = {
        "users": dict.fromkeys(STAGES, 0),
        "changed": dict.fromkeys(STAGES, 0),
    }
    for row in rows:
        tallies[row.tally][row.stage] = row.total
    return RefreshLifecycleResult(users=tallies["users"], changed=tallies["changed"])


# One pass over the events (grouped per user) and the profiles; the UPDATE skips users
# whose stage is unchanged, so a daily refresh rewrites only the ones that moved.
_REFRESH = text(
    """
    WITH stages AS MATERIALIZED (
        SELECT p.id,
               CASE
                   WHEN p.created_at > :new_since THEN 'new'
                   WHEN GREATEST(e.last_seen, p.created_at) <= :churned_before THEN 'churned'
                   WHEN GREATEST(e.last_seen, p.created_at) <= :dormant_before THEN 'dormant'
                   WHEN p.created_at < :mature_before
                        AND COALESCE(e.recent, 0) >= :mature_events THEN 'mature'
                   ELSE 'growing'
               END AS stage
        FROM profiles AS p
        LEFT JOIN (
            SELECT user_id, max(ts) AS last_seen,
                   count(*) FILTER (WHERE ts > :recent_since) AS recent
            FROM events WHERE ts <= :at
            GROUP BY user_id
        ) AS e ON e.user_id = p.id
    ), changed AS (
        UPDATE profiles AS p SET lifecycle = s.stage, updated_at = :at
        FROM (SELECT id, stage FROM stages) AS s
        WHERE p.id = s.id AND p.lifecycle <> s.stage
        RETURNING s.stage
    )
    SELECT 'users' AS tally, stage, count(*) AS total FROM stages GROUP BY stage
    UNION ALL
    SELECT 'changed', stage, count(*) FROM changed GROUP BY stage
    """
)


# Tags: stored ones first, then added ones, each once, in first-seen order; removal wins.
_UPDATE = text(
    """
    UPDATE profiles AS p SET
        locale = COALESCE(r.columns ->> 'locale', p.locale),
        timezone = CASE WHEN r.columns ? 'timezone'
                        THEN r.columns ->> 'timezone' ELSE p.timezone END,
        lifecycle = COALESCE(r.columns ->> 'lifecycle', p.lifecycle),
        attrs = (p.attrs || r.attrs) - r.drop_attrs,
        tags = ARRAY(
            SELECT t.tag FROM unnest(p.tags || r.tags_add) WITH ORDINALITY AS t(tag, position)
            WHERE t.tag <> ALL(r.tags_remove)
            GROUP BY t.tag ORDER BY min(t.position)),
        updated_at = r.at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        key text, user_id text, at timestamptz, columns jsonb, attrs jsonb,
        drop_attrs text[], tags_add text[], tags_remove text[])
    WHERE p.id = r.user_id
    RETURNING r.key
    """
)
