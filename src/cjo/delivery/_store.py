"""The dispatcher's SQL: claim a batch of the outbox, keep its lease, write what happened.

Each is one statement, whatever the batch's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.delivery.providers.base import OutgoingMessage

# Due, unleased (or whose lease lapsed: its dispatcher died) pending rows, oldest first.
# SKIP LOCKED lets dispatchers claim side by side, each taking rows no other is taking;
# the lease then keeps them out of every other claim until it lapses. The claim counts as
# an attempt at once, so a message that kills its dispatcher cannot come back forever.
_CLAIM = text(
    """
    WITH due AS (
        SELECT id FROM messages
        WHERE status = 'pending' AND not_before <= now()
          AND (lease_until IS NULL OR lease_until < now())
        ORDER BY not_before
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE messages m
        SET lease_until = now() + make_interval(secs => :lease), attempts = m.attempts + 1
        FROM due WHERE m.id = due.id
        RETURNING m.id, m.business_line, m.channel, m.user_id, m.address, m.subject, m.body,
                  m.html, m.template, m.locale, m.marketing, m.journey, m.step_id, m.attempts
    )
    SELECT claimed.*,
           claimed.marketing AND EXISTS (
               SELECT 1 FROM consents c
               WHERE c.user_id = claimed.user_id AND c.channel = claimed.channel
                 AND NOT c.granted
           ) AS opted_out
    FROM claimed
    """
)

_RENEW = text(
    """
    UPDATE messages SET lease_until = now() + make_interval(secs => :lease)
    WHERE id = ANY(:ids) AND status = 'pending' AND lease_until IS NOT NULL
    """
)

# One row per message of the batch. A receipt may already have moved a message on (a fast
# provider's `delivered` callback): then only the sending facts are filled in.
_RECORD = text(
    """
    UPDATE messages m SET
        status = CASE WHEN m.status = 'pending' THEN v.status ELSE m.status END,
        not_before = CASE WHEN v.delay IS NULL THEN m.not_before
                          ELSE now() + make_interval(secs => v.delay) END,
        attempts = m.attempts - v.refund,
        sent_at = CASE WHEN v.status IN ('sent', 'delivered')
                       THEN coalesce(m.sent_at, now()) ELSE m.sent_at END,
        provider_ref = coalesce(m.provider_ref, v.provider_ref),
        last_error = CASE WHEN v.status IN ('sent', 'delivered') THEN m.last_error
                          ELSE coalesce(v.error, m.last_error) END,
        reason = coalesce(v.reason, m.reason),
        lease_until = NULL
    FROM unnest(
        CAST(:ids AS text[]), CAST(:statuses AS text[]), CAST(:delays AS float8[]),
        CAST(:refunds AS int[]), CAST(:refs AS text[]), CAST(:errors AS text[]),
        CAST(:reasons AS text[])
    ) AS v(id, status, delay, refund, provider_ref, error, reason)
    WHERE m.id = v.id AND (m.status = 'pending' OR v.status IN ('sent', 'delivered'))
    """
)


# The `sent` receipts, in the same transaction as the outcomes: a message marked sent has
# its receipt. Keyed as `DeliveryReport.key` keys them (`<message id>/sent/`, no report
# id), so a repeat stores nothing.
_SENT_RECEIPTS = text(
    """
    INSERT INTO delivery_receipts (key, message_id, status, provider_ref, raw, at)
    SELECT v.id || '/sent/', v.id, 'sent', v.provider_ref, '{}'::jsonb, now()
    FROM unnest(CAST(:ids AS text[]), CAST(:refs AS text[])) AS v(id, provider_ref)
    ON CONFLICT (key) DO NOTHING
    """
)


@dataclass(frozen=True, slots=True)
class Claimed:
    message: OutgoingMessage
    # A marketing message whose user has since said no to its channel.
    opted_out: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write for one message: where it stands, and when to look at it again."""

    id: str
    status: str  # pending (to retry) | sent | delivered | failed | suppressed
    delay: float | None = None  # pending: seconds from now until it is due again
    refund: int = 0  # 1: this claim was no attempt (the provider's breaker was open)
    provider_ref: str | None = None
    error: str | None = None
    reason: str | None = None


async def claim(connection: AsyncConnection, *, limit: int, lease: float) -> list[Claimed]:
    rows = await connection.execute(_CLAIM, {"limit": limit, "lease": lease})
    claimed = []
    for row in rows:
        values = row._asdict()
        opted_out = bool(values.pop("opted_out"))
        values["attempt"] = values.pop("attempts")
        claimed.append(Claimed(OutgoingMessage(**values), opted_out))
    return claimed


async def renew(connection: AsyncConnection, ids: Sequence[str], *, lease: float) -> None:
    if ids:
        await connection.execute(_RENEW, {"ids": list(ids), "lease": lease})


async def record(connection: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """Write the outcomes, and a `sent` receipt for each message sent."""
    if not outcomes:
        return
    await connection.execute(
        _RECORD,
        {
            "ids": [o.id for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "delays": [o.delay for o in outcomes],
            "refunds": [o.refund for o in outcomes],
            "refs": [o.provider_ref for o in outcomes],
            "errors": [o.error for o in outcomes],
            "reasons": [o.reason for o in outcomes],
        },
    )
    sent = [o for o in outcomes if o.status == "sent"]
    if sent:
        await connection.execute(
            _SENT_RECEIPTS,
            {"ids": [o.id for o in sent], "refs": [o.provider_ref for o in sent]},
        )
