"""The dispatcher: delivers the outbox (`messages` rows in `pending`) through the providers.

A loop claims a batch of due messages with one statement (`FOR UPDATE SKIP LOCKED`, a
lease, the attempt counted), delivers them concurrently through their channel's provider
for the message's business line, writes every outcome with one statement and reports
`sent`, `delivered` and `failed` as receipts (and the last two as events to journeys).
Several dispatchers, and several loops ("lanes") in one, run side by side: a message is
claimed by one of them at a time.

**Exactly once, as far as the provider can tell.** Every attempt at a message carries
the message id as its idempotency key (`Idempotency-Key` over HTTP, the `Message-ID` of
an email). A dispatcher that dies between a provider's answer and writing it down leaves
its lease to lapse; the message is then delivered again, with the same key, so a
provider that keys on it accepts it once.

Per provider: a token bucket (`rate_per_second`); retries with exponential backoff and
jitter (`backoff_initial_seconds` doubling up to `backoff_max_seconds`, never sooner than
a `Retry-After`) until `max_attempts`, then `failed`; a circuit breaker (`breaker_failures`,
`breaker_reset_seconds`) whose open state puts messages back without spending an attempt.
A marketing message whose user has since withdrawn the channel's consent is `suppressed`
(`opted_out`) instead of sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from cjo.delivery._breaker import CircuitBreaker
from cjo.delivery._rate import TokenBucket
from cjo.delivery._store import Claimed, Outcome, claim, record, renew
from cjo.delivery.feedback import (
    DeliveryFeedback,
    DeliveryReport,
    RecordReportsInput,
    ReportStatus,
)
from cjo.delivery.providers import make_provider
from cjo.delivery.providers.base import (
    Accepted,
    AttemptResult,
    OutgoingMessage,
    Provider,
    Rejected,
    Retryable,
    short,
)
from cjo.runtime.log import get_logger
from cjo.runtime.settings import ANY_BUSINESS_LINE, ProviderSettings, Settings
from cjo.store.db import SessionFactory, transaction

__all__ = ["BatchSummary", "Dispatcher", "ProviderGate", "make_provider"]

# Claim loops per dispatcher: while one writes its batch down, the other keeps the
# delivery slots busy.
LANES = 2
# A message that would wait longer than this for its provider's rate goes back to the
# outbox instead: a batch is not held up by one slow provider.
RATE_HORIZON_SECONDS = 5.0
# After a failed batch (the database away), wait this long at most before the next try.
MAX_ERROR_PAUSE_SECONDS = 10.0
MAX_BACKOFF_DOUBLINGS = 40
MAX_REF_CHARS = 128
# The outcomes reported through the feedback: receipts and events.
REPORTED: dict[str, ReportStatus] = {"delivered": "delivered", "failed": "failed"}

log = get_logger(__name__)


def backoff_seconds(settings: ProviderSettings, attempt: int) -> float:
    """Before retry after attempt `attempt` (from 1): the doubling delay, half of it jitter.

    Half fixed, half random ("equal jitter"): the wait grows with every attempt, and
    messages that failed together do not all come back together.
    """
    doublings = min(max(attempt - 1, 0), MAX_BACKOFF_DOUBLINGS)
    ceiling = min(settings.backoff_max_seconds, settings.backoff_initial_seconds * 2**doublings)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class ProviderGate:
    """One configured provider with what the dispatcher keeps about it."""

    def __init__(self, name: str, settings: ProviderSettings, provider: Provider) -> None:
        self.name = name
        self.settings = settings
        self.provider = provider
        self.bucket = TokenBucket(settings.rate_per_second)
        self.breaker = CircuitBreaker(
            failures=settings.breaker_failures, reset_seconds=settings.breaker_reset_seconds
        )

    def observe(self, result: AttemptResult) -> None:
        state = self.breaker.state
        if isinstance(result, Retryable):
            if result.retry_after:
                self.bucket.hold(result.retry_after)
            if result.throttled:
                self.breaker.released()
            else:
                self.breaker.failed()
        else:
            self.breaker.succeeded()
        if self.breaker.state != state:
            log.warning("dispatcher.breaker", provider=self.name, state=self.breaker.state)


@dataclass(frozen=True, slots=True)
class BatchSummary:
    claimed: int = 0
    sent: int = 0
    delivered: int = 0
    retried: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0


class Dispatcher:
    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        *,
        feedback: DeliveryFeedback | None = None,
        lanes: int = LANES,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._feedback = feedback or DeliveryFeedback(sessions, None)
        self._lanes = lanes
        self._slots = asyncio.Semaphore(settings.dispatcher_concurrency)
        # Built now, so that a provider configured wrongly stops the process at start.
        self._gates: dict[tuple[str, str], ProviderGate] = {
            (line, channel): ProviderGate(
                f"{line}/{channel}",
                provider,
                make_provider(provider, max_connections=settings.dispatcher_concurrency),
            )
            for line, channels in settings.providers.items()
            for channel, provider in channels.items()
        }

    def gate(self, business_line: str, channel: str) -> ProviderGate | None:
        """The business line's own provider for the channel, else the "*" one, else none."""
        for line in (business_line, ANY_BUSINESS_LINE):
            found = self._gates.get((line, channel))
            if found is not None:
                return found
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; batches in hand are finished first."""
        log.info("dispatcher.start", lanes=self._lanes, providers=sorted(self._names()))
        await asyncio.gather(*(self._lane(stop) for _ in range(self._lanes)))
        log.info("dispatcher.stop")

    async def run_once(self) -> BatchSummary:
        """Claim one batch, deliver it, write it down and report it."""
        settings = self._settings
        async with transaction(self._sessions) as connection:
            claimed = await claim(
                connection,
                limit=settings.dispatcher_batch_size,
                lease=settings.dispatcher_lease_seconds,
            )
        if not claimed:
            return BatchSummary()
        started = time.perf_counter()
        outcomes = await self._deliver(claimed)
        # `sent` is only a receipt: `record` writes it with the outcomes, in their
        # transaction. `delivered` and `failed` go through the feedback, to become events.
        async with transaction(self._sessions) as connection:
            await record(connection, outcomes)
        await self._report(claimed, _reports(outcomes, datetime.now(UTC)))
        summary = _summarise(outcomes)
        log.info(
            "dispatcher.batch",
            ms=round((time.perf_counter() - started) * 1000),
            **{key: value for key, value in asdict(summary).items() if value},
        )
        return summary

    async def aclose(self) -> None:
        for gate in self._gates.values():
            await gate.provider.aclose()

    async def _lane(self, stop: asyncio.Event) -> None:
        errors = 0
        while not stop.is_set():
            try:
                summary = await self.run_once()
            except Exception:
                errors += 1
                log.exception("dispatcher.batch_failed", consecutive=errors)
                pause = self._settings.dispatcher_poll_seconds * 2 ** min(errors, 10)
                await _wait(stop, min(MAX_ERROR_PAUSE_SECONDS, pause))
                continue
            errors = 0
            if summary.claimed < self._settings.dispatcher_batch_size:
                await _wait(stop, self._settings.dispatcher_poll_seconds)

    async def _deliver(self, claimed: Sequence[Claimed]) -> list[Outcome]:
        unfinished = {item.message.id for item in claimed}
        keeper = asyncio.create_task(self._keep_leases(unfinished))
        try:
            return list(await asyncio.gather(*(self._one(item, unfinished) for item in claimed)))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_leases(self, unfinished: set[str]) -> None:
        """Extend the leases of a batch that takes long (a slow provider, a tight rate)."""
        lease = self._settings.dispatcher_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with transaction(self._sessions) as connection:
                    await renew(connection, sorted(unfinished), lease=lease)
            except Exception:
                log.exception("dispatcher.renew_failed", messages=len(unfinished))

    async def _one(self, item: Claimed, unfinished: set[str]) -> Outcome:
        try:
            return await self._attempt(item)
        finally:
            unfinished.discard(item.message.id)

    async def _attempt(self, item: Claimed) -> Outcome:
        message = item.message
        if item.opted_out:
            return Outcome(message.id, "suppressed", reason="opted_out")
        gate = self.gate(message.business_line, message.channel)
        if gate is None:
            error = (
                f"no provider configured for channel '{message.channel}'"
                f" of business line '{message.business_line}'"
            )
            return Outcome(message.id, "failed", error=error)
        held = gate.bucket.held_for()
        if held > 0:
            return _put_back(message, held)
        taken, wait = gate.bucket.reserve(RATE_HORIZON_SECONDS)
        if not taken:
            return _put_back(message, wait)
        if wait > 0:
            await asyncio.sleep(wait)
        async with self._slots:
            # Looked at now, not before the wait: the provider may have failed meanwhile.
            closed_for = gate.bucket.held_for() or gate.breaker.admit()
            if closed_for:
                return _put_back(message, closed_for)
            try:
                result = await gate.provider.deliver(message)
            except Exception as error:  # a provider's bug must not stop the dispatcher
                log.exception("dispatcher.provider_error", provider=gate.name, message=message.id)
                result = Retryable(short(f"{type(error).__name__}: {error}"))
        gate.observe(result)
        return _outcome(message, gate, result)

    async def _report(self, claimed: Sequence[Claimed], reports: Sequence[DeliveryReport]) -> None:
        """`delivered` and `failed` become receipts and events, routed to journeys."""
        if not reports:
            return
        try:
            await self._feedback.record(RecordReportsInput(reports=list(reports)))
        except Exception:
            # The outcomes are written; only the receipts (or routing their events) failed.
            log.exception("dispatcher.report_failed", reports=len(reports))
        attempts = {item.message.id: item.message.attempt for item in claimed}
        for report in reports:
            if report.status == "failed":
                log.warning(
                    "dispatcher.failed",
                    message=report.message_id,
                    attempts=attempts[report.message_id],
                    error=report.detail.get("error"),
                )

    def _names(self) -> list[str]:
        return [gate.name for gate in self._gates.values()]


def _outcome(message: OutgoingMessage, gate: ProviderGate, result: AttemptResult) -> Outcome:
    if isinstance(result, Accepted):
        ref = result.provider_ref[:MAX_REF_CHARS] if result.provider_ref else None
        return Outcome(message.id, result.status, provider_ref=ref)
    if isinstance(result, Rejected):
        return Outcome(message.id, "failed", error=result.error)
    if message.attempt >= gate.settings.max_attempts:
        error = short(f"gave up after {message.attempt} attempts: {result.error}")
        return Outcome(message.id, "failed", error=error)
    delay = max(result.retry_after or 0.0, backoff_seconds(gate.settings, message.attempt))
    log.info(
        "dispatcher.retry",
        provider=gate.name,
        message=message.id,
        attempt=message.attempt,
        in_seconds=round(delay, 3),
        error=result.error,
    )
    return Outcome(message.id, "pending", delay=delay, error=result.error)


def _reports(outcomes: Sequence[Outcome], at: datetime) -> list[DeliveryReport]:
    return [
        DeliveryReport(
            message_id=outcome.id,
            status=REPORTED[outcome.status],
            at=at,
            provider_ref=outcome.provider_ref,
            detail={} if outcome.error is None else {"error": outcome.error},
        )
        for outcome in outcomes
        if outcome.status in REPORTED
    ]


def _put_back(message: OutgoingMessage, seconds: float) -> Outcome:
    """Not attempted (the provider is closed to us for `seconds`): the claim costs nothing."""
    return Outcome(message.id, "pending", delay=seconds, refund=1)


def _summarise(outcomes: Sequence[Outcome]) -> BatchSummary:
    counts = Counter(outcome.status for outcome in outcomes)
    deferred = sum(1 for outcome in outcomes if outcome.refund)
    return BatchSummary(
        claimed=len(outcomes),
        sent=counts["sent"],
        delivered=counts["delivered"],
        retried=counts["pending"] - deferred,
        deferred=deferred,
        failed=counts["failed"],
        suppressed=counts["suppressed"],
    )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
