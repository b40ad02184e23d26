"""The HTTP provider (sms, push, wechat, call, webhook): a signed JSON POST per message.

Every attempt at a message POSTs the same bytes to the provider's `url` with::

    Content-Type: application/json
    Idempotency-Key: <message id>
    X-CJO-Timestamp: <unix seconds>
    X-CJO-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<body>" with the provider's secret>

so a provider that keys on `Idempotency-Key` sees a message once however often it is
retried. A 2xx is accepted (its JSON `id`, if any, becomes the message's provider_ref);
408, 429, 5xx, timeouts and connection errors may be retried (429 and 503 with their
Retry-After, in seconds or as an HTTP date); any other answer rejects the message for good.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from cjo.delivery.providers.base import (
    Accepted,
    AttemptResult,
    OutgoingMessage,
    Rejected,
    Retryable,
    short,
)
from cjo.delivery.signing import signed_headers
from cjo.runtime.settings import ProviderSettings

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_REF_CHARS = 128
CONNECTIONS_PER_CLIENT = 4


def request_body(message: OutgoingMessage) -> bytes:
    """The JSON a provider receives: compact, UTF-8, the same bytes on every attempt."""
    payload = {
        "message_id": message.id,
        "channel": message.channel,
        "business_line": message.business_line,
        "to": message.address,
        "subject": message.subject,
        "body": message.body,
        "html": message.html,
        "template": message.template,
        "locale": message.locale,
        "marketing": message.marketing,
        "journey": message.journey,
        "step": message.step_id,
        "user_id": message.user_id,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header as seconds from `now` (never negative); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify(response: httpx.Response, now: datetime) -> AttemptResult:
    status = response.status_code
    if 200 <= status < 300:
        return Accepted("sent", _provider_ref(response))
    error = f"HTTP {status}: {response.text[:200]}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return Retryable(
            short(error),
            retry_after=retry_after_seconds(response.headers.get("Retry-After"), now),
            throttled=status == 429,
        )
    return Rejected(short(error))


def _provider_ref(response: httpx.Response) -> str | None:
    try:
        answer: Any = response.json()
    except ValueError:
        return None
    ref = answer.get("id") if isinstance(answer, dict) else None
    return str(ref)[:MAX_REF_CHARS] if ref is not None else None


class ClientPool:
    """`connections` keep-alive connections, as httpx clients of a few connections each.

    httpcore looks at every connection of a client each time it places a request, so one
    client with many connections costs more CPU per request the more it has (at 32, about
    three times what it costs at 4). Clients of `CONNECTIONS_PER_CLIENT`, each lent for one
    request per connection at a time, keep that cost flat and never queue inside httpx.
    """

    def __init__(self, connections: int, *, timeout: float) -> None:
        per = CONNECTIONS_PER_CLIENT
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        # One TLS context for all: loading the CA bundle per client is slow.
        tls = ssl.create_default_context()
        self._clients = [
            httpx.AsyncClient(timeout=timeout, limits=limits, verify=tls)
            for _ in range(math.ceil(max(1, connections) / per))
        ]
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for _ in range(per):
            for client in self._clients:
                self._free.put_nowait(client)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class HttpProvider:
    def __init__(self, settings: ProviderSettings, *, max_connections: int = 32) -> None:
        if not settings.url or settings.secret is None:
            raise ValueError("an http provider needs a `url` and a `secret` to sign with")
        # Parsed once: httpx would parse the string again for every request.
        self._url = httpx.URL(settings.url)
        self._secret = settings.secret.get_secret_value()
        self._timeout = settings.timeout_seconds
        self._clients = ClientPool(max_connections, timeout=settings.timeout_seconds)

    async def deliver(self, message: OutgoingMessage) -> AttemptResult:
        body = request_body(message)
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: message.id,
            **signed_headers(self._secret, int(time.time()), body),
        }
        try:
            async with self._clients.client() as client:
                response = await client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Retryable(f"no answer within {self._timeout:g}s")
        except httpx.HTTPError as error:
            return Retryable(short(f"{type(error).__name__}: {error}"))
        return classify(response, datetime.now(UTC))

    async def aclose(self) -> None:
        await self._clients.aclose()


def make(settings: ProviderSettings, *, max_connections: int) -> HttpProvider:
    return HttpProvider(settings, max_connections=max_connections)
