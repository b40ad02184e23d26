"""The message centre (the `inbox` channel) and a user's messages, as the API reads them.

An inbox message is shown once the dispatcher has delivered it (status `sent` or
`delivered`), newest first. Reading one sets `read_at` once; the first read is also an
`opened` report, so journeys can `wait_for: message_opened` on inbox messages as on push.
Lists page by (created_at, id), newest first, so a page boundary never skips or repeats
a message however many arrive meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import text

from cjo.delivery.feedback import DeliveryFeedback, DeliveryReport, RecordReportsInput
from cjo.steps.run import Contract, Moment, UserId
from cjo.store.db import SessionFactory, reading, transaction

INBOX = "inbox"
# Inbox messages the customer can see: the dispatcher has put them in the message centre.
VISIBLE_STATUSES = ("sent", "delivered")


class MessagePosition(Contract):
    """Where a page ended: the last message's creation time and id."""

    created_at: datetime
    id: str


class InboxItem(Contract):
    id: str
    journey: str | None
    step: str | None
    template: str
    subject: str | None
    body: str | None
    html: str | None
    created_at: datetime
    sent_at: datetime | None
    read: bool
    read_at: datetime | None


class InboxPageInput(Contract):
    user_id: UserId
    unread_only: bool = False
    limit: int = Field(default=50, ge=1, le=500)
    after: MessagePosition | None = None


class InboxPage(Contract):
    items: list[InboxItem]
    next: MessagePosition | None
    unread: int


class MarkReadInput(Contract):
    user_id: UserId
    message_id: str = Field(min_length=1, max_length=64)
    at: Moment


class MarkReadResult(Contract):
    """`found`: the message is a visible inbox message of this user; `read_at`: the first read."""

    found: bool
    read_at: datetime | None = None


class UserMessage(Contract):
    id: str
    channel: str
    status: str
    reason: str | None
    marketing: bool
    template: str
    journey: str | None
    step: str | None
    subject: str | None
    body: str | None
    created_at: datetime
    not_before: datetime | None
    sent_at: datetime | None
    read_at: datetime | None


class UserMessagesInput(Contract):
    user_id: UserId
    channel: str | None = None
    status: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    after: MessagePosition | None = None


class UserMessagesPage(Contract):
    items: list[UserMessage]
    next: MessagePosition | None


class MessageCentre:
    def __init__(self, sessions: SessionFactory, feedback: DeliveryFeedback | None = None) -> None:
        self._sessions = sessions
        self._feedback = feedback

    async def inbox(self, data: InboxPageInput) -> InboxPage:
        filters = ["channel = :inbox", "status = ANY(:visible)"]
        params: dict[str, Any] = {"inbox": INBOX, "visible": list(VISIBLE_STATUSES)}
        if data.unread_only:
            filters.append("read_at IS NULL")
        rows = await self._page(
            "id, journey, step_id AS step, template, subject, body, html, created_at, sent_at,"
            " read_at IS NOT NULL AS read, read_at",
            data.user_id,
            filters,
            params,
            data.limit,
            data.after,
        )
        async with reading(self._sessions) as connection:
            unread = await connection.execute(
                text(
                    "SELECT count(*) FROM messages WHERE user_id = :user AND channel = :inbox"
                    " AND status = ANY(:visible) AND read_at IS NULL"
                ),
                {"user": data.user_id, **params},
            )
            unread_count = int(unread.scalar_one())
        items = [InboxItem.model_validate(row) for row in rows[: data.limit]]
        return InboxPage(
            items=items, next=_next(items, len(rows) > data.limit), unread=unread_count
        )

    async def mark_read(self, data: MarkReadInput) -> MarkReadResult:
        """Idempotent: a repeated read keeps the first time and records nothing new."""
        async with transaction(self._sessions) as connection:
            row = (
                await connection.execute(
                    text(
                        "UPDATE messages SET read_at = coalesce(read_at, :at)"
                        " WHERE id = :id AND user_id = :user AND channel = :inbox"
                        " AND status = ANY(:visible) RETURNING read_at"
                    ),
                    {
                        "at": data.at,
                        "id": data.message_id,
                        "user": data.user_id,
                        "inbox": INBOX,
                        "visible": list(VISIBLE_STATUSES),
                    },
                )
            ).one_or_none()
        if row is None:
            return MarkReadResult(found=False)
        read_at: datetime = row[0]
        if self._feedback is not None:
            # Every time, not only the first: the receipt's key makes repeats no-ops, and
            # a read whose report was lost (a crash just here) gets it on the next read.
            opened = DeliveryReport(
                message_id=data.message_id, status="opened", at=read_at, detail={"via": "inbox"}
            )
            await self._feedback.record(RecordReportsInput(reports=[opened]))
        return MarkReadResult(found=True, read_at=read_at)

    async def messages(self, data: UserMessagesInput) -> UserMessagesPage:
        filters: list[str] = []
        params: dict[str, Any] = {}
        if data.channel is not None:
            filters.append("channel = :channel")
            params["channel"] = data.channel
        if data.status is not None:
            filters.append("status = :status")
            params["status"] = data.status
        rows = await self._page(
            "id, channel, status, reason, marketing, template, journey, step_id AS step,"
            " subject, body, created_at, not_before, sent_at, read_at",
            data.user_id,
            filters,
            params,
            data.limit,
            data.after,
        )
        items = [UserMessage.model_validate(row) for row in rows[: data.limit]]
        return UserMessagesPage(items=items, next=_next(items, len(rows) > data.limit))

    async def _page(
        self,
        columns: str,
        user_id: str,
        filters: list[str],
        params: dict[str, Any],
        limit: int,
        after: MessagePosition | None,
    ) -> list[dict[str, Any]]:
        """One more row than asked for, so the caller knows whether another page follows."""
        where = ["user_id = :user", *filters]
        values = {**params, "user": user_id, "limit": limit + 1}
        if after is not None:
            where.append("(created_at, id) < (:after_at, :after_id)")
            values |= {"after_at": after.created_at, "after_id": after.id}
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text(
                    f"SELECT {columns} FROM messages WHERE {' AND '.join(where)}"
                    " ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                values,
            )
            return [dict(row._mapping) for row in rows]


def _next(items: list[InboxItem] | list[UserMessage], more: bool) -> MessagePosition | None:
    if not more or not items:
        return None
    last = items[-1]
    return MessagePosition(created_at=last.created_at, id=last.id)
