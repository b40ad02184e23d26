"""The SQL of `messaging.send`: a page's reads and its set-based writes.

Every function runs inside the caller's transaction, after it has taken the users' locks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cjo.activities.messaging._contact_rules import Contact
from cjo.store.schema import ContactLog, Message, Profile


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a page of send decisions reads before deciding, fetched in one round trip."""

    recorded: dict[str, Message]
    profiles: dict[str, Profile]
    consents: defaultdict[str, dict[str, bool]]
    campaigns: list[tuple[str, str]]  # (id, state) of the requests' campaigns


# Three reads in one statement: each subquery answers a JSON array (a page pays one round
# trip here, not three; the rows are rebuilt as the same models the decision reads).
_SEND_CONTEXT = text(
    "SELECT"
    " (SELECT coalesce(json_agg(m), '[]') FROM messages m WHERE m.key = ANY(:keys)),"
    " (SELECT coalesce(json_agg(p), '[]') FROM profiles p WHERE p.id = ANY(:users)),"
    " (SELECT coalesce(json_agg(json_build_array(c.user_id, c.channel, c.granted)), '[]')"
    "  FROM consents c WHERE c.user_id = ANY(:users)),"
    " (SELECT coalesce(json_agg(json_build_array(k.id, k.state)), '[]')"
    "  FROM campaigns k WHERE k.id = ANY(:campaigns))"
)


async def send_context(
    session: AsyncSession,
    keys: Sequence[str],
    user_ids: Sequence[str],
    campaign_ids: Sequence[str],
) -> SendContext:
    connection = await session.connection()
    params = {"keys": list(keys), "users": list(user_ids), "campaigns": list(campaign_ids)}
    row = (await connection.execute(_SEND_CONTEXT, params)).one()
    messages, profiles, consent_rows, campaigns = row
    consents: defaultdict[str, dict[str, bool]] = defaultdict(dict)
    for user_id, channel, granted in consent_rows:
        consents[user_id][channel] = granted
    return SendContext(
        recorded={m["key"]: Message.model_validate(m) for m in messages},
        profiles={p["id"]: Profile.model_validate(p) for p in profiles},
        consents=consents,
        campaigns=[(str(campaign_id), str(state)) for campaign_id, state in campaigns],
    )


async def messages_by_key(session: AsyncSession, keys: Sequence[str]) -> dict[str, Message]:
    rows = await session.exec(select(Message).where(col(Message.key).in_(keys)))
    return {row.key: row for row in rows.all()}


async def contacts_since(
    session: AsyncSession,
    *,
    user_ids: Collection[str],
    business_lines: Collection[str],
    since: datetime | None,
) -> defaultdict[tuple[str, str], list[Contact]]:
    """Contacts after `since` by (business line, user); none asked for when `since` is None."""
    by_person: defaultdict[tuple[str, str], list[Contact]] = defaultdict(list)
    if since is None:
        return by_person
    statement = select(ContactLog).where(
        col(ContactLog.user_id).in_(user_ids),
        col(ContactLog.business_line).in_(business_lines),
        col(ContactLog.at) > since,
    )
    for row in (await session.exec(statement)).all():
        assert row.at is not None
        by_person[(row.business_line, row.user_id)].append(
            Contact(row.journey, row.channel, row.at)
        )
    return by_person


async def insert_messages(session: AsyncSession, rows: Sequence[Message]) -> set[str]:
    """Insert the new decisions; the keys actually inserted (a conflict keeps the first)."""
    if not rows:
        return set()
    values = [row.model_dump(exclude={"created_at", "sent_at", "provider_ref"}) for row in rows]
    statement = (
        pg_insert(Message)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(Message.key))
    )
    # A list of parameters, not `.values(list)`: SQLAlchemy batches it into multi-row
    # INSERTs from one cached statement instead of compiling a new giant one per page.
    return set((await session.exec(statement, params=values)).scalars().all())


async def log_contacts(session: AsyncSession, rows: Sequence[Message]) -> None:
    if not rows:
        return
    values = [
        {
            "user_id": row.user_id,
            "business_line": row.business_line,
            "journey": row.journey,
            "channel": row.channel,
            "message_id": row.id,
            "at": row.not_before,
        }
        for row in rows
    ]
    await session.exec(pg_insert(ContactLog), params=values)
