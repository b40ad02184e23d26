"""The SQL of `messaging.send`: a page's reads and its set-based writes.

Every function runs inside the caller's transaction, after it has taken the users' locks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cjo.activities._contact_rules import Contact
from cjo.store.schema import Consent, ContactLog, Message, Profile


async def messages_by_key(session: AsyncSession, keys: Sequence[str]) -> dict[str, Message]:
    rows = await session.exec(select(Message).where(col(Message.key).in_(keys)))
    return {row.key: row for row in rows.all()}


async def profiles_by_id(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, Profile]:
    rows = await session.exec(select(Profile).where(col(Profile.id).in_(user_ids)))
    return {row.id: row for row in rows.all()}


async def consents_by_user(
    session: AsyncSession, user_ids: Sequence[str]
) -> defaultdict[str, dict[str, bool]]:
    statement = select(Consent.user_id, Consent.channel, Consent.granted).where(
        col(Consent.user_id).in_(user_ids)
    )
    by_user: defaultdict[str, dict[str, bool]] = defaultdict(dict)
    for user_id, channel, granted in (await session.exec(statement)).all():
        by_user[user_id][channel] = granted
    return by_user


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
