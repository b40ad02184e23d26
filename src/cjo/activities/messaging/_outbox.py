"""The SQL of `messaging.send`: a page's reads and its set-based writes.

Every function runs inside the caller's transaction, after it has taken the users' locks.
Rows are plain frozen dataclasses and the profile is the journeys' `UserProfile`: the
decision only reads them, and ORM objects cost a send more than the rest of its Python.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities.messaging._contact_rules import Contact
from cjo.activities.people.profiles import CONTEXT_SELECT
from cjo.steps.run import UserProfile
from cjo.store.db import Statement, run


@dataclass(frozen=True, slots=True)
class Decided:
    """A send decision as the outbox keeps it: what `messages` holds of it when decided."""

    id: str
    key: str
    business_line: str
    journey: str | None
    workflow_id: str | None
    step_id: str | None
    user_id: str
    channel: str
    template: str
    template_version: str | None
    locale: str | None
    marketing: bool
    status: str
    reason: str | None
    address: str | None
    subject: str | None
    body: str | None
    html: str | None
    not_before: datetime | None
    links: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Decided:
        """From a `messages` row as PostgreSQL's JSON spells it."""
        values: dict[str, Any] = {name: row.get(name) for name in _MESSAGE_FIELDS}
        moment = values["not_before"]
        values["not_before"] = datetime.fromisoformat(moment) if moment else None
        values["links"] = list(values["links"] or [])
        return cls(**values)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["not_before"] = self.not_before.isoformat() if self.not_before else None
        return row


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a page of send decisions reads before deciding, fetched in one round trip."""

    recorded: dict[str, Decided]
    profiles: dict[str, UserProfile]  # with their consents
    campaigns: list[tuple[str, str]]  # (id, state) of the requests' campaigns


# Three reads in one statement: each subquery answers a JSON array (a page pays one round
# trip here, not three). Profiles come as journeys read them, consents included.
_SEND_CONTEXT = Statement(
    "SELECT"
    " (SELECT coalesce(json_agg(m), '[]') FROM messages m WHERE m.key = ANY(:keys)),"
    f" (SELECT coalesce(json_agg(x), '[]') FROM ({CONTEXT_SELECT}) AS x),"
    " (SELECT coalesce(json_agg(json_build_array(k.id, k.state)), '[]')"
    "  FROM campaigns k WHERE k.id = ANY(:campaigns))"
)


async def send_context(
    connection: AsyncConnection,
    keys: Sequence[str],
    user_ids: Sequence[str],
    campaign_ids: Sequence[str],
) -> SendContext:
    params = {"keys": list(keys), "ids": list(user_ids), "campaigns": list(campaign_ids)}
    ((messages, profiles, campaigns),) = await run(connection, _SEND_CONTEXT, params)
    return SendContext(
        recorded={m["key"]: Decided.from_row(m) for m in messages},
        profiles={p["id"]: UserProfile.model_validate(p) for p in profiles},
        campaigns=[(str(campaign_id), str(state)) for campaign_id, state in campaigns],
    )


async def messages_by_key(connection: AsyncConnection, keys: Sequence[str]) -> dict[str, Decided]:
    rows = await run(connection, _BY_KEY, {"keys": list(keys)})
    return {row["key"]: Decided.from_row(row) for (row,) in rows}


_BY_KEY = Statement("SELECT row_to_json(m) FROM messages m WHERE m.key = ANY(:keys)")


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
    rows = await run(
        connection,
        _CONTACTS,
        {"users": list(user_ids), "lines": list(business_lines), "since": since},
    )
    for business_line, user_id, journey, channel, at in rows:
        by_person[(business_line, user_id)].append(Contact(journey, channel, at))
    return by_person


_CONTACTS = Statement(
    "SELECT business_line, user_id, journey, channel, at FROM contact_log"
    " WHERE user_id = ANY(:users) AND business_line = ANY(:lines) AND at > :since"
)
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
_INSERT_MESSAGES = Statement(
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


async def insert_messages(connection: AsyncConnection, rows: Sequence[Decided]) -> set[str]:
    """Insert the new decisions and log the contacts among them; the keys actually
    inserted (a conflict keeps the first decision)."""
    if not rows:
        return set()
    values = [row.as_row() for row in rows]
    inserted = await run(connection, _INSERT_MESSAGES, {"rows": json.dumps(values)})
    return {key for (key,) in inserted}
