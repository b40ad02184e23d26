"""The SQL of `messaging.send`: a page's reads and its set-based writes.

Every function runs inside the caller's transaction, after it has taken the users' locks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities.messaging._contact_rules import Contact
from cjo.store.schema import Message, Profile


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
    connection: AsyncConnection,
    keys: Sequence[str],
    user_ids: Sequence[str],
    campaign_ids: Sequence[str],
) -> SendContext:
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


async def messages_by_key(connection: AsyncConnection, keys: Sequence[str]) -> dict[str, Message]:
    rows = await connection.execute(
        text("SELECT row_to_json(m) FROM messages m WHERE m.key = ANY(:keys)"), {"keys": keys}
    )
    return {row[0]["key"]: Message.model_validate(row[0]) for row in rows}


async def contacts_since(
    connection: AsyncConnection,
    *,
    user_ids: Collection[str],
    business_lines: Collection[str],
    since: datetime | None,
) -> defaultdict[tuple[str, str], list[Contact]]:
    """Contacts after `since` by (business line, user); none asked for when `since` is None."""
    by_person: defaultdict[tuple[str, str], list[Contact]] = defaultdict(list)
    if since is None:
        return by_person
    rows = await connection.execute(
        text(
            "SELECT business_line, user_id, journey, channel, at FROM contact_log"
            " WHERE user_id = ANY(:users) AND business_line = ANY(:lines) AND at > :since"
        ),
        {"users": list(user_ids), "lines": list(business_lines), "since": since},
    )
    for business_line, user_id, journey, channel, at in rows:
        by_person[(business_line, user_id)].append(Contact(journey, channel, at))
    return by_person


_MESSAGE_COLUMNS = (
    "id text, key text, business_line text, journey text, workflow_id text, step_id text,"
    " user_id text, channel text, template text, template_version text, locale text,"
    " marketing boolean, status text, reason text, address text, subject text, body text,"
    " html text, not_before timestamptz, links jsonb"
)
_MESSAGE_FIELDS = (
    "id",
    "key",
    "business_line",
    "journey",
    "workflow_id",
    "step_id",
    "user_id",
    "channel",
    "template",
    "template_version",
    "locale",
    "marketing",
    "status",
    "reason",
    "address",
    "subject",
    "body",
    "html",
    "not_before",
    "links",
)
# The new decisions and the contacts that count against caps, in one round trip: a pending
# marketing message is a contact. A key already decided (a concurrent request of another
# user reusing it) inserts nothing and logs nothing; its first decision stands.
_INSERT_MESSAGES = text(
    "WITH inserted AS ("
    f" INSERT INTO messages ({', '.join(_MESSAGE_FIELDS)}, attempts)"
    f" SELECT {', '.join(_MESSAGE_FIELDS)}, 0"
    f" FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_MESSAGE_COLUMNS})"
    " ON CONFLICT (key) DO NOTHING"
    " RETURNING id, key, user_id, business_line, journey, channel, marketing, status,"
    " not_before),"
    " contacts AS ("
    " INSERT INTO contact_log (user_id, business_line, journey, channel, message_id, at)"
    " SELECT user_id, business_line, journey, channel, id, not_before FROM inserted"
    " WHERE marketing AND status = 'pending')"
    " SELECT key FROM inserted"
)


async def insert_messages(connection: AsyncConnection, rows: Sequence[Message]) -> set[str]:
    """Insert the new decisions and log the contacts among them; the keys actually
    inserted (a conflict keeps the first decision)."""
    if not rows:
        return set()
    values = [row.model_dump(mode="json", include=set(_MESSAGE_FIELDS)) for row in rows]
    inserted = await connection.execute(_INSERT_MESSAGES, {"rows": json.dumps(values)})
    return set(inserted.scalars())
