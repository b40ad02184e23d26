"""A token bucket per provider: at most `rate` messages a second, bursts of up to `rate`."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate_per_second: float) -> None:
        self._rate = rate_per_second
        self._capacity = max(1.0, rate_per_second)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        # Set by a 429's Retry-After: the provider takes nothing before then.
        self._hold_until = 0.0

    def reserve(self, max_wait: float, now: float | None = None) -> tuple[bool, float]:
        """Take a token, possibly one not yet earned: (taken, seconds until it may be used).

        Taking on credit keeps waiters in order without a lock: each one's wait counts the
        tokens the ones before it took. A token more than `max_wait` away is not taken: the
        message had better go back to the outbox for that long than hold its batch.
        """
        now = time.monotonic() if now is None else now
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate
        if wait > max_wait:
            return False, wait
        self._tokens -= 1.0
        return True, wait

    def hold(self, seconds: float, now: float | None = None) -> None:
        """Take nothing for `seconds` (the provider said so with a Retry-After)."""
        now = time.monotonic() if now is None else now
        self._hold_until = max(self._hold_until, now + seconds)

    def held_for(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return max(0.0, self._hold_until - now)
