"""A cap on request bodies, answered with a 413 problem before the body is parsed."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cjo.api.problems import problem_response, too_large

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
