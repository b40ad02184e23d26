"""Delivery reports from a provider's callback, kept to the messages that provider sent.

A provider's callback is signed with its secret (`signing`); a valid signature says who
sent it, not which messages it may speak about. So a report counts only for a message on
the callback's channel whose business line's provider for that channel has the same
secret: one business line's SMS provider cannot mark another line's messages delivered,
or an email provider an SMS. Reports about any other message count as unknown, exactly
like ids that do not exist, so a callback learns nothing about messages that are not its.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import col, select

from cjo.delivery.feedback import (
    DeliveryFeedback,
    DeliveryReport,
    RecordReportsInput,
    RecordReportsResult,
)
from cjo.runtime.log import get_logger
from cjo.steps.run import Contract
from cjo.store.db import SessionFactory
from cjo.store.schema import Message

log = get_logger(__name__)


class ProviderReportsInput(Contract):
    channel: str
    reports: list[DeliveryReport]


class ProviderReceipts:
    """Records a provider's reports about its own messages through `DeliveryFeedback`."""

    def __init__(
        self,
        sessions: SessionFactory,
        feedback: DeliveryFeedback,
        serves: Callable[[str], bool],
    ) -> None:
        """`serves(business_line)`: whether the calling provider delivers that line's
        messages on the channel (the caller decides from the provider settings)."""
        self._sessions = sessions
        self._feedback = feedback
        self._serves = serves

    async def record(self, data: ProviderReportsInput) -> RecordReportsResult:
        ids = sorted({report.message_id for report in data.reports})
        owners = await self._owners(ids)
        theirs = {
            message_id
            for message_id, (channel, business_line) in owners.items()
            if channel == data.channel and self._serves(business_line)
        }
        foreign = set(owners) - theirs
        if foreign:
            log.warning(
                "receipts for messages of another channel or provider",
                channel=data.channel,
                messages=len(foreign),
            )
        accepted = [report for report in data.reports if report.message_id in theirs]
        recorded = await self._feedback.record(RecordReportsInput(reports=accepted))
        unknown = sorted({report.message_id for report in data.reports} - theirs)
        return recorded.model_copy(update={"unknown_message_ids": unknown})

    async def _owners(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        async with self._sessions() as session:
            rows = await session.exec(
                select(Message.id, Message.channel, Message.business_line).where(
                    col(Message.id).in_(ids)
                )
            )
            return {message_id: (channel, line) for message_id, channel, line in rows.all()}
