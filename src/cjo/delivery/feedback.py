"""What happens to a message after the outbox comes back in as receipts and events.

A report (`sent`, `delivered`, `failed`, `opened`, `clicked`) is stored once as a
delivery receipt, keyed so that a provider repeating its callback changes nothing. Every
new report except `sent` also becomes an event, `message_<status>`, for the message's
user: stored like any other event and routed to their running journeys, so a journey can
`wait_for: message_opened` with `where: event.props.step == "push_offer"`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select

from cjo.activities._base import utc
from cjo.activities.people.profiles import EventInput, ProfileActivities
from cjo.activities.runs.routing import RoutingActivities, store_and_route
from cjo.runtime.log import get_logger
from cjo.steps.run import Contract, Moment
from cjo.store.db import SessionFactory
from cjo.store.schema import DeliveryReceipt, Message

ReportStatus = Literal["sent", "delivered", "failed", "opened", "clicked"]
# The statuses that become events (`sent` is the dispatcher's own bookkeeping).
EVENT_STATUSES: frozenset[str] = frozenset({"delivered", "failed", "opened", "clicked"})
# What a report moves the message to; later reports never move it back.
MESSAGE_STATUS = {"delivered": "delivered", "failed": "failed"}
# Event ids (the sender's id, the events' dedup key) have at most this many characters.
EVENT_ID_MAX = 128

log = get_logger(__name__)


class DeliveryReport(Contract):
    """One thing a provider (or the dispatcher) says happened to one message."""

    message_id: str = Field(min_length=1, max_length=64)
    status: ReportStatus
    at: Moment
    provider_ref: str | None = Field(default=None, max_length=128)
    # The provider's id for this report, when it has one: distinct reports of the same
    # status (two clicks on two links) are kept apart by it, repeats of one are not.
    report_id: str | None = Field(default=None, max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.message_id}/{self.status}/{self.report_id or ''}"


class RecordReportsInput(Contract):
    reports: list[DeliveryReport]


class RecordReportsResult(Contract):
    recorded: int
    duplicates: int
    unknown_message_ids: list[str]
    events: int


class DeliveryFeedback:
    """Stores reports as receipts and events, and routes the events to journeys."""

    def __init__(self, sessions: SessionFactory, routing: RoutingActivities | None) -> None:
        self._sessions = sessions
        self._routing = routing
        self._profiles = ProfileActivities(sessions)

    async def record(self, data: RecordReportsInput) -> RecordReportsResult:
        messages = await self._messages({report.message_id for report in data.reports})
        known = [report for report in data.reports if report.message_id in messages]
        unknown = sorted({r.message_id for r in data.reports if r.message_id not in messages})
        fresh = await self._store_receipts(known)
        events = [
            _event(report, messages[report.message_id])
            for report in fresh
            if report.status in EVENT_STATUSES
        ]
        routed = await store_and_route(self._profiles, self._routing, events)
        return RecordReportsResult(
            recorded=len(fresh),
            duplicates=len(known) - len(fresh),
            unknown_message_ids=unknown,
            events=routed,
        )

    async def _messages(self, ids: set[str]) -> dict[str, Message]:
        if not ids:
            return {}
        async with self._sessions() as session:
            rows = await session.exec(select(Message).where(col(Message.id).in_(ids)))
            return {row.id: row for row in rows.all()}

    async def _store_receipts(self, reports: Sequence[DeliveryReport]) -> list[DeliveryReport]:
        """Insert the receipts not seen before and move their messages on; the new ones."""
        if not reports:
            return []
        values = [
            {
                "key": report.key,
                "message_id": report.message_id,
                "status": report.status,
                "provider_ref": report.provider_ref,
                "raw": report.detail,
                "at": utc(report.at),
            }
            for report in reports
        ]
        statement = (
            pg_insert(DeliveryReceipt)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(col(DeliveryReceipt.key))
        )
        async with self._sessions() as session, session.begin():
            inserted = set((await session.exec(statement, params=values)).scalars().all())
            fresh: list[DeliveryReport] = []
            for report in reports:
                # A report repeated within the batch is a duplicate, like a repeat later.
                if report.key in inserted:
                    inserted.discard(report.key)
                    fresh.append(report)
            connection = await session.connection()
            for report in fresh:
                status = MESSAGE_STATUS.get(report.status)
                if status is None:
                    continue
                # `failed` after `delivered` is a late, contradicting report: keep delivered.
                await connection.execute(
                    text(
                        "UPDATE messages SET status = :status,"
                        " provider_ref = coalesce(provider_ref, :ref)"
                        " WHERE id = :id AND status IN ('pending', 'sent')"
                    ),
                    {"status": status, "ref": report.provider_ref, "id": report.message_id},
                )
        return fresh


def _event(report: DeliveryReport, message: Message) -> EventInput:
    props: dict[str, Any] = {
        "message_id": message.id,
        "channel": message.channel,
        "template": message.template,
        "journey": message.journey,
        "step": message.step_id,
        "workflow_id": message.workflow_id,
        "marketing": message.marketing,
    }
    props.update({k: v for k, v in report.detail.items() if k not in props})
    return EventInput(
        # The receipt's key: a repeated report is one event, as it is one receipt.
        id=_event_id(report.key),
        user_id=message.user_id,
        name=f"message_{report.status}",
        props=props,
        ts=report.at,
    )


def _event_id(key: str) -> str:
    """The key itself when it fits an event id; else a prefix and a hash of all of it, so
    two long report ids that share their first characters stay two events."""
    if len(key) <= EVENT_ID_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{key[: EVENT_ID_MAX - len(digest) - 1]}#{digest}"


def report_time(value: datetime | None, default: datetime) -> datetime:
    """A provider's timestamp when it gave one, else when the report arrived."""
    return utc(value) if value is not None else default
