"""The inbox (message centre) provider: the `messages` row is the inbox item.

Nothing travels anywhere: the message is in the database already, so an attempt is
delivered at once, and the customer's apps read it through the API.
"""

from __future__ import annotations

from cjo.delivery.providers.base import Accepted, AttemptResult, OutgoingMessage
from cjo.runtime.settings import ProviderSettings


class InboxProvider:
    async def deliver(self, message: OutgoingMessage) -> AttemptResult:
        return Accepted("delivered")

    async def aclose(self) -> None:
        return None


def make(settings: ProviderSettings, *, max_connections: int) -> InboxProvider:
    return InboxProvider()
