"""Which business line a user's records belong to, for principals scoped to some lines.

Customer profiles and consents are shared by every line (one customer, one record); what
a line did with a customer (its messages, runs, grants) is that line's. The message centre
answers for every line; these lookups let the API keep only the lines a caller sees.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text

from cjo.delivery.message_centre import INBOX, VISIBLE_STATUSES
from cjo.store.db import SessionFactory, reading


class Tenancy:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def message_lines(self, user_id: str, message_ids: Collection[str]) -> dict[str, str]:
        """The business line of each of the user's messages among `message_ids`."""
        if not message_ids:
            return {}
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text(
                    "SELECT id, business_line FROM messages"
                    " WHERE user_id = :user AND id = ANY(:ids)"
                ),
                {"user": user_id, "ids": list(message_ids)},
            )
            return {str(row.id): str(row.business_line) for row in rows}

    async def unread_inbox(self, user_id: str, business_lines: Collection[str]) -> int:
        """The user's unread message-centre items from `business_lines` only."""
        async with reading(self._sessions) as connection:
            unread = await connection.execute(
                text(
                    "SELECT count(*) FROM messages WHERE user_id = :user AND channel = :inbox"
                    " AND status = ANY(:visible) AND read_at IS NULL"
                    " AND business_line = ANY(:lines)"
                ),
                {
                    "user": user_id,
                    "inbox": INBOX,
                    "visible": list(VISIBLE_STATUSES),
                    "lines": sorted(business_lines),
                },
            )
            return int(unread.scalar_one())
