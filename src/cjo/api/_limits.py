"""Caps: request bodies (a 413 problem before the body is parsed) and each principal's
request rate (a token bucket; the guard in `cjo.api.auth` answers 429)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cjo.api.problems import problem_response, too_large

# Defaults of the settings `max_body_bytes` and `max_batch`.
# Batches of 1,000 events or profiles with generous props stay well under this.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The DSL loader refuses larger bundles anyway (E101); saying 413 first is clearer.
MAX_BUNDLE_BYTES = 1024 * 1024
# The most events or profiles one request may carry.
MAX_BATCH = 1000


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: at once when Content-Length says so, else as read."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            problem = too_large(f"the body is {declared} bytes; the limit is {self.max_bytes}")
            await problem_response(problem.problem, scope.get("path"))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while reading the body on to
                    # the exception handlers, which answer it as a 413 problem.
                    raise HTTPException(413, f"the body is over {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, in bursts of up to as many.

    It lives in one API process: with N processes behind a balancer a principal gets up
    to N times the rate. Buckets are kept per principal, so memory grows with principals,
    not with requests.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """Spend one request of `key`'s; None if allowed, else seconds until one is free."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.per_minute), at=now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate
