"""Profiles: upserts from source systems, consents, events, the `user` context journeys
read, and (from `lifecycle`) the journey's `update` step and the lifecycle refresh.

Every write is set-based: one SQL statement per batch of up to `BATCH_SIZE` items, whatever
the batch holds, with the batch passed as one JSON parameter and unpacked in SQL.

Errors::

    ActivityError
    └── InvalidProfileUpdateError   an `update` request writes a bad value or a read-only field
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity

from cjo.activities.people.lifecycle import (
    InvalidProfileUpdateError,
    LifecycleRules,
    Locale,
    RefreshLifecycleInput,
    RefreshLifecycleResult,
    Stage,
    TimeZoneName,
    apply_updates,
    split_nulls,
)
from cjo.activities.people.lifecycle import refresh as refresh_stages
from cjo.runtime import channels as runtime_channels
from cjo.steps.contracts import (
    UpdateProfilesInput,
    UpdateProfilesResult,
)
from cjo.steps.run import Contract, Moment, Tag, UserId, UserProfile
from cjo.store.db import SessionFactory, transaction

__all__ = [
    "BATCH_SIZE",
    "ConsentChange",
    "ConsentOutcome",
    "EventInput",
    "IngestEventsInput",
    "IngestEventsResult",
    "InvalidProfileUpdateError",
    "LifecycleRules",
    "ProfileActivities",
    "ProfileContextInput",
    "ProfileContextResult",
    "ProfileInput",
    "RefreshLifecycleInput",
    "RefreshLifecycleResult",
    "SetConsentsInput",
    "SetConsentsResult",
    "UpsertProfilesInput",
    "UpsertProfilesResult",
]

BATCH_SIZE = 1000
EVENT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"
Item = TypeVar("Item")
# Consents are per channel; `addresses` holds the channels the profile addresses by name
# (a device token, an open id, a URL). Both from the channel list.
Channel = runtime_channels.Channel
AddressChannel = runtime_channels.AddressBookChannel


class ProfileInput(Contract):
    """A profile to create or change, with the fields of the DSL's `user` root.

    Fields left out keep what is stored (a new profile gets the defaults; `created_at`
    defaults to the upsert's `at`). `name`, `phone`, `email`, `timezone` and `birthday`
    given as null are cleared. `attrs` and `addresses` merge into what is stored, and a key
    given as null is removed. `tags`, when given, replace the list.
    """

    id: UserId
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{2,31}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    locale: Locale = "zh-CN"
    timezone: TimeZoneName | None = None
    birthday: date | None = None
    created_at: Moment | None = None
    lifecycle: Stage = "new"
    tags: list[Tag] = Field(default_factory=list)
    attrs: dict[str, Any] = Field(default_factory=dict)
    addresses: dict[AddressChannel, str | None] = Field(default_factory=dict)


class UpsertProfilesInput(Contract):
    profiles: list[ProfileInput]
    at: Moment


class UpsertProfilesResult(Contract):
    created: int
    updated: int


class ConsentChange(Contract):
    user_id: UserId
    consents: dict[Channel, bool] = Field(min_length=1)
    source: str = Field(min_length=1, max_length=64)
    at: Moment


class SetConsentsInput(Contract):
    requests: list[ConsentChange]


class ConsentOutcome(Contract):
    """`superseded`: channels on which a later change (stored or in this page) wins."""

    user_id: str
    found: bool
    applied: list[str]
    superseded: list[str]


class SetConsentsResult(Contract):
    results: list[ConsentOutcome]


class EventInput(Contract):
    """An event as its sender reports it; `id` is the sender's own id, the dedup key."""

    id: str = Field(min_length=1, max_length=128)
    user_id: UserId
    name: str = Field(pattern=EVENT_NAME_PATTERN)
    props: dict[str, Any] = Field(default_factory=dict)
    ts: Moment


class IngestEventsInput(Contract):
    events: list[EventInput]


class IngestEventsResult(Contract):
    """`duplicate_ids` names each refused occurrence, in input order (an id may repeat)."""

    accepted: int
    duplicates: int
    accepted_ids: list[str]
    duplicate_ids: list[str]


class ProfileContextInput(Contract):
    user_ids: list[UserId]


class ProfileContextResult(Contract):
    """One entry per requested id, in order; None where there is no such profile."""

    profiles: list[UserProfile | None]


class ProfileActivities:
    """Profiles, consents and events on the database."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="profiles.upsert")
    async def upsert_profiles(self, data: UpsertProfilesInput) -> UpsertProfilesResult:
        created = updated = 0
        async with transaction(self._sessions) as connection:
            for batch in _batches(_fold_duplicates(data.profiles)):
                rows = await connection.execute(_UPSERT, _upsert_params(batch, data.at))
                flags = list(rows.scalars())
                created += sum(flags)
                updated += len(flags) - sum(flags)
        return UpsertProfilesResult(created=created, updated=updated)

    @activity.defn(name="profiles.set_consents")
    async def set_consents(self, data: SetConsentsInput) -> SetConsentsResult:
        """Record consent changes; a change older than the stored one for a channel loses."""
        # Within a page, too, the latest change per channel wins (ties: the later request).
        winners: dict[tuple[str, str], int] = {}
        rows_by_channel: dict[tuple[str, str], dict[str, Any]] = {}
        for index, change in enumerate(data.requests):
            for channel, granted in change.consents.items():
                best = winners.get((change.user_id, channel))
                if best is None or change.at >= data.requests[best].at:
                    winners[(change.user_id, channel)] = index
                    rows_by_channel[(change.user_id, channel)] = {
                        "user_id": change.user_id,
                        "channel": channel,
                        "granted": granted,
                        "source": change.source,
                        "at": change.at.isoformat(),
                    }
        rows = list(rows_by_channel.values())
        async with transaction(self._sessions) as connection:
            found = await connection.execute(_SET_CONSENTS, {"rows": json.dumps(rows)})
        known: set[str] = set()
        written: set[tuple[str, str]] = set()
        for row in found:
            known.add(row.user_id)
            if row.channel is not None:
                written.add((row.user_id, row.channel))
        results = []
        for index, change in enumerate(data.requests):
            applied = [
                channel
                for channel in change.consents
                if winners[(change.user_id, channel)] == index
                and (change.user_id, channel) in written
            ]
            is_known = change.user_id in known
            results.append(
                ConsentOutcome(
                    user_id=change.user_id,
                    found=is_known,
                    applied=applied,
                    superseded=[c for c in change.consents if is_known and c not in applied],
                )
            )
        return SetConsentsResult(results=results)

    @activity.defn(name="profiles.ingest_events")
    async def ingest_events(self, data: IngestEventsInput) -> IngestEventsResult:
        """Store events once per sender's id: repeats, in this page or earlier, are refused."""
        accepted: set[str] = set()
        async with transaction(self._sessions) as connection:
            for batch in _batches(data.events):
                rows = [event.model_dump(mode="json") for event in batch]
                stored = await connection.execute(_INGEST, {"rows": json.dumps(rows)})
                accepted.update(stored.scalars())
        accepted_ids: list[str] = []
        duplicate_ids: list[str] = []
        for event in data.events:
            # The first occurrence of an accepted id is the one stored; later ones are repeats.
            if event.id in accepted:
                accepted.discard(event.id)
                accepted_ids.append(event.id)
            else:
                duplicate_ids.append(event.id)
        return IngestEventsResult(
            accepted=len(accepted_ids),
            duplicates=len(duplicate_ids),
            accepted_ids=accepted_ids,
            duplicate_ids=duplicate_ids,
        )

    @activity.defn(name="profiles.update")
    async def update(self, data: UpdateProfilesInput) -> UpdateProfilesResult:
        """The `update` step, once per key: a repeated key changes nothing, answers the same."""
        async with self._sessions() as session, session.begin():
            return await apply_updates(await session.connection(), data)

    @activity.defn(name="profiles.context")
    async def profile_context(self, data: ProfileContextInput) -> ProfileContextResult:
        async with self._sessions() as session:
            by_id = await load_profiles(await session.connection(), data.user_ids)
        return ProfileContextResult(profiles=[by_id.get(user_id) for user_id in data.user_ids])

    @activity.defn(name="profiles.refresh_lifecycle")
    async def refresh_lifecycle(self, data: RefreshLifecycleInput) -> RefreshLifecycleResult:
        async with self._sessions() as session, session.begin():
            return await refresh_stages(await session.connection(), data)


async def load_profiles(
    connection: AsyncConnection, user_ids: Sequence[str]
) -> dict[str, UserProfile]:
    """The profiles (with consents) of these users, as expressions see them, by id."""
    rows = await connection.execute(_CONTEXT, {"ids": list(set(user_ids))})
    return {row.id: UserProfile.model_validate(row._asdict()) for row in rows}


def _batches(items: Sequence[Item]) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def _fold_duplicates(profiles: Sequence[ProfileInput]) -> list[ProfileInput]:
    """One input per id, as if applied in order: ON CONFLICT may touch a row only once."""
    folded: dict[str, ProfileInput] = {}
    for profile in profiles:
        earlier = folded.get(profile.id)
        if earlier is None:
            folded[profile.id] = profile
            continue
        merged = earlier.model_dump(exclude_unset=True) | profile.model_dump(exclude_unset=True)
        merged["attrs"] = earlier.attrs | profile.attrs
        merged["addresses"] = earlier.addresses | profile.addresses
        folded[profile.id] = ProfileInput.model_validate(merged)
    return list(folded.values())


def _upsert_params(profiles: Sequence[ProfileInput], at: datetime) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    changes: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        row = profile.model_dump(mode="json")
        row["attrs"], drop_attrs = split_nulls(profile.attrs)
        row["addresses"], drop_addresses = split_nulls(profile.addresses)
        rows.append(row)
        # A null created_at means "not given": the column cannot be cleared.
        given = [
            name
            for name in profile.model_fields_set
            if name != "created_at" or profile.created_at is not None
        ]
        changes[profile.id] = {
            "given": given,
            "drop_attrs": drop_attrs,
            "drop_addresses": drop_addresses,
        }
    return {"rows": json.dumps(rows), "changes": json.dumps(changes), "at": at}


# Rows go in id order so that concurrent pages lock the rows they share in the same order.
# The conflict branch reads what each row gave (and which map keys it removes) from
# `changes`, keyed by id: `excluded` alone cannot tell "not given" from a default.
_UPSERT = text(
    """
    WITH batch AS (SELECT CAST(:changes AS jsonb) AS changes)
    INSERT INTO profiles AS p (
        id, name, phone, email, locale, timezone, birthday, created_at, updated_at,
        lifecycle, tags, attrs, addresses)
    SELECT r.id, r.name, r.phone, r.email, r.locale, r.timezone, r.birthday,
           COALESCE(r.created_at, :at), :at, r.lifecycle, r.tags, r.attrs, r.addresses
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        id text, name text, phone text, email text, locale text, timezone text,
        birthday date, created_at timestamptz, lifecycle text, tags text[],
        attrs jsonb, addresses jsonb)
    ORDER BY r.id
    ON CONFLICT (id) DO UPDATE SET (
        name, phone, email, locale, timezone, birthday, created_at, lifecycle, tags,
        attrs, addresses, updated_at
    ) = (
        SELECT
            CASE WHEN c.given ? 'name' THEN excluded.name ELSE p.name END,
            CASE WHEN c.given ? 'phone' THEN excluded.phone ELSE p.phone END,
            CASE WHEN c.given ? 'email' THEN excluded.email ELSE p.email END,
            CASE WHEN c.given ? 'locale' THEN excluded.locale ELSE p.locale END,
            CASE WHEN c.given ? 'timezone' THEN excluded.timezone ELSE p.timezone END,
            CASE WHEN c.given ? 'birthday' THEN excluded.birthday ELSE p.birthday END,
            CASE WHEN c.given ? 'created_at' THEN excluded.created_at ELSE p.created_at END,
            CASE WHEN c.given ? 'lifecycle' THEN excluded.lifecycle ELSE p.lifecycle END,
            CASE WHEN c.given ? 'tags' THEN excluded.tags ELSE p.tags END,
            (p.attrs || excluded.attrs) - c.drop_attrs,
            (p.addresses || excluded.addresses) - c.drop_addresses,
            excluded.updated_at
        FROM batch, jsonb_to_record(batch.changes -> excluded.id)
            AS c(given jsonb, drop_attrs text[], drop_addresses text[])
    )
    RETURNING (xmax = 0) AS created
    """
)

# Only users with a profile get consents (the foreign key); a stored change newer than the
# incoming one wins, so late deliveries of old changes are harmless.
_SET_CONSENTS = text(
    """
    WITH wanted AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            user_id text, channel text, granted boolean, source text, at timestamptz)
    ), known AS (
        SELECT id FROM profiles WHERE id IN (SELECT user_id FROM wanted)
    ), written AS (
        INSERT INTO consents AS c (user_id, channel, granted, source, updated_at)
        SELECT w.user_id, w.channel, w.granted, w.source, w.at
        FROM wanted AS w JOIN known AS k ON k.id = w.user_id
        ORDER BY w.user_id, w.channel
        ON CONFLICT (user_id, channel) DO UPDATE
            SET granted = excluded.granted, source = excluded.source,
                updated_at = excluded.updated_at
            WHERE c.updated_at <= excluded.updated_at
        RETURNING c.user_id, c.channel
    )
    SELECT id AS user_id, NULL AS channel FROM known
    UNION ALL
    SELECT user_id, channel FROM written
    """
)

# In id order, like the upsert; among repeats of an id in the page the first is kept.
_INGEST = text(
    """
    INSERT INTO events (client_id, user_id, name, props, ts)
    SELECT r.id, r.user_id, r.name, r.props, r.ts
    FROM ROWS FROM (
        jsonb_to_recordset(CAST(:rows AS jsonb))
            AS (id text, user_id text, name text, props jsonb, ts timestamptz)
    ) WITH ORDINALITY AS r(id, user_id, name, props, ts, position)
    ORDER BY r.id, r.position
    ON CONFLICT (client_id) DO NOTHING
    RETURNING client_id
    """
)

# A profile as expressions see it (with its consents), for the users in `:ids`.
CONTEXT_SELECT = """
    SELECT p.id, p.name, p.phone, p.email, p.locale, p.timezone, p.birthday, p.created_at,
           p.lifecycle, p.tags, p.attrs, p.addresses,
           COALESCE(c.consents, '{}'::jsonb) AS consents
    FROM profiles AS p
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(channel, granted) AS consents
        FROM consents WHERE user_id = p.id
    ) AS c ON true
    WHERE p.id = ANY(CAST(:ids AS text[]))
"""
_CONTEXT = text(CONTEXT_SELECT)
