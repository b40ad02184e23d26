"""A click on a tracked link: checked, recorded once as a `clicked` report, redirected.

The links themselves are made at send time (`cjo.activities.messaging.links`).
"""

from __future__ import annotations

from datetime import datetime

from cjo.activities.messaging.links import link_signature_ok
from cjo.delivery.feedback import DeliveryFeedback, DeliveryReport, RecordReportsInput
from cjo.runtime.log import get_logger
from cjo.store.db import SessionFactory
from cjo.store.schema import Message

log = get_logger(__name__)


class TrackedLinks:
    """Resolves a click on a tracked link and records it as a `clicked` report."""

    def __init__(self, sessions: SessionFactory, feedback: DeliveryFeedback, secret: str) -> None:
        self._sessions = sessions
        self._feedback = feedback
        self._secret = secret

    async def click(self, message_id: str, index: int, signature: str, at: datetime) -> str | None:
        """The URL to redirect to, after recording the click; None for a link CJO never made.

        The signature is checked before the database is asked, so forged links cost nothing.
        Each link of a message is clicked once as far as receipts and events go (the
        report's id is the link's index): repeats redirect but record nothing new.
        """
        if index < 0 or not link_signature_ok(self._secret, message_id, index, signature):
            return None
        async with self._sessions() as session:
            message = await session.get(Message, message_id)
            links = list(message.links) if message is not None else []
        if index >= len(links):
            return None
        url = links[index]
        report = DeliveryReport(
            message_id=message_id,
            status="clicked",
            at=at,
            report_id=f"link-{index}",
            detail={"link": index, "url": url},
        )
        try:
            await self._feedback.record(RecordReportsInput(reports=[report]))
        except Exception:  # noqa: BLE001 - the customer still goes where the link promised
            log.exception("recording a click failed", message_id=message_id, link=index)
        return url
