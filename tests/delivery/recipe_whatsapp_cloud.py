"""The worked example of a new kind of provider: WhatsApp Business over Meta's Cloud API.

docs/recipes/add-a-channel.md walks through it. `test_adding_a_channel.py` installs this
file as `cjo/delivery/providers/whatsapp_cloud.py` in a copy of CJO, adds the channel's
line, and delivers a message through it to a real HTTP server.

Configured like any provider, in CJO_PROVIDERS::

    "whatsapp": {"kind": "whatsapp_cloud", "url": "https://graph.facebook.com/v21.0",
                 "secret": "<access token>", "options": {"phone_number_id": "1234567890"}}

The Cloud API does not de-duplicate on a key: a message whose dispatcher died after
Meta took it is sent again when its lease lapses. `biz_opaque_callback_data` carries the
message id, so Meta's status webhooks can be turned into receipts for the right message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from cjo.delivery.providers.base import (
    Accepted,
    AttemptResult,
    OutgoingMessage,
    Rejected,
    Retryable,
    short,
)
from cjo.delivery.providers.http import classify
from cjo.runtime.settings import ProviderSettings


class Options(BaseModel):
    """What this kind needs beyond the common settings: the sending number's id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_number_id: str = Field(min_length=1)


class WhatsAppCloudProvider:
    def __init__(self, settings: ProviderSettings, *, max_connections: int) -> None:
        if not settings.url or settings.secret is None:
            raise ValueError("a whatsapp_cloud provider needs a `url` and a `secret` (its token)")
        options = Options.model_validate(settings.options)
        self._url = f"{settings.url.rstrip('/')}/{options.phone_number_id}/messages"
        self._token = settings.secret.get_secret_value()
        self._timeout = settings.timeout_seconds
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_seconds,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def deliver(self, message: OutgoingMessage) -> AttemptResult:
        if not message.address:
            return Rejected("no phone number")
        payload = {
            "messaging_product": "whatsapp",
            "to": message.address,
            "type": "text",
            "text": {"body": message.body or ""},
            "biz_opaque_callback_data": message.id,
        }
        try:
            response = await self._client.post(
                self._url, json=payload, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx.TimeoutException:
            return Retryable(f"no answer within {self._timeout:g}s")
        except httpx.HTTPError as error:
            return Retryable(short(f"{type(error).__name__}: {error}"))
        # The HTTP provider's reading of statuses: 2xx taken, 408/429/5xx retried, 4xx not.
        result = classify(response, datetime.now(UTC))
        return Accepted("sent", _wamid(response)) if isinstance(result, Accepted) else result

    async def aclose(self) -> None:
        await self._client.aclose()


def _wamid(response: httpx.Response) -> str | None:
    """Meta's id of the message: {"messages": [{"id": "wamid..."}]}."""
    try:
        answer: Any = response.json()
    except ValueError:
        return None
    messages = answer.get("messages") if isinstance(answer, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return str(found) if found is not None else None
    return None


def make(settings: ProviderSettings, *, max_connections: int) -> WhatsAppCloudProvider:
    return WhatsAppCloudProvider(settings, max_connections=max_connections)
