"""What every activity module shares: ids, locks and the error root.

Errors::

    ActivityError            a permanent failure: Temporal will not retry it
    └── (per module)         e.g. UnknownBenefitError

Transient failures (a lost connection, a deadlock) are left to raise as they are, so
Temporal retries them; every side effect is idempotent on its request key, so a retry
never does anything twice.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import ApplicationError

from cjo.steps.run import utc

__all__ = ["ActivityError", "lock", "new_id", "utc"]


class ActivityError(ApplicationError):
    """A failure that retrying cannot mend (bad input, a missing resource)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=type(self).__name__, non_retryable=True)


def new_id() -> str:
    return uuid.uuid4().hex


async def lock(session: AsyncSession, *parts: str) -> None:
    """Serialise transactions on one logical thing (a user's caps, a user's benefit limit).

    A transaction-scoped advisory lock: released at commit or rollback, never leaked.
    """
    # Through the connection: SQLModel's session.execute is deprecated for plain SQL.
    connection = await session.connection()
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": "\x1f".join(parts)},
    )
