"""What a channel provider is to the dispatcher: one attempt at one message, and its result.

A provider never decides about retrying: it says what happened, and the dispatcher decides
(backoff, the circuit breaker, giving up at the provider's `max_attempts`):

- `Accepted`: the provider took the message (`sent`), or it is already where it goes
  (`delivered`, the inbox);
- `Retryable`: it did not, and the same attempt may work later (a timeout, a 5xx, a
  refused connection, a 429 with its `Retry-After`);
- `Rejected`: it never will (a 4xx about this message, a refused recipient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

# Errors are stored in `messages.last_error` and logged: keep them short.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A claimed outbox row, as providers see it. `id` is the idempotency key of every attempt."""

    id: str
    business_line: str
    channel: str
    user_id: str
    address: str | None
    subject: str | None
    body: str | None
    html: str | None
    template: str
    locale: str | None
    marketing: bool
    journey: str | None
    step_id: str | None
    # This attempt's number, counting from 1 (a lapsed lease counts as an attempt).
    attempt: int


@dataclass(frozen=True, slots=True)
class Accepted:
    status: Literal["sent", "delivered"] = "sent"
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Retryable:
    error: str
    # Seconds the provider asked us to wait (Retry-After), if it said.
    retry_after: float | None = None
    # A 429: the provider is up but we are too fast. It pauses the provider instead of
    # counting towards its circuit breaker.
    throttled: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    error: str


AttemptResult = Accepted | Retryable | Rejected


class Provider(Protocol):
    """Delivers messages of one channel to one configured provider."""

    async def deliver(self, message: OutgoingMessage) -> AttemptResult:
        """One attempt. Must not raise for anything the provider or the network does."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the dispatcher stops."""
        ...


def short(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
