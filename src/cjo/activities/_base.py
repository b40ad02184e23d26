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
from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.exceptions import ApplicationError

from cjo.steps.run import utc
from cjo.store.db import Statement, run

__all__ = ["ActivityError", "lock", "new_id", "utc"]


class ActivityError(ApplicationError):
    """A failure that retrying cannot mend (bad input, a missing resource)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=type(self).__name__, non_retryable=True)


def new_id() -> str:
    return uuid.uuid4().hex


def lock_keys(things: Iterable[Sequence[str]]) -> list[str]:
    """The advisory-lock keys of logical things, for `LOCKED` (param `:lock_keys`)."""
    return sorted({"\x1f".join(parts) for parts in things})


# Transaction-scoped advisory locks on `:lock_keys`, all in one go, in one global order (by
# their hashes), so transactions that lock overlapping sets cannot deadlock. A CTE, so a
# statement that need not read after the locks can take them on its way.
LOCKED = (
    "locked AS (SELECT count(pg_advisory_xact_lock(h)) AS n FROM ("
    " SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(CAST(:lock_keys AS text[])) AS k"
    " ORDER BY h) AS ordered)"
)
_LOCK = Statement(f"WITH {LOCKED} SELECT n FROM locked")


async def lock(connection: AsyncConnection, things: Iterable[Sequence[str]]) -> None:
    """Serialise transactions on logical things (a user's caps, a user's benefit limit).

    The locks are released at commit or rollback, never leaked. What the transaction reads
    after this statement sees every transaction that held a lock before it.
    """
    keys = lock_keys(things)
    if keys:
        await run(connection, _LOCK, {"lock_keys": keys})
