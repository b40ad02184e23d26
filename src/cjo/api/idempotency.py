"""`Idempotency-Key` for mutating endpoints: a retried request gets the first answer again.

A client that may retry a call sends a key of its own choosing with it. The first request
with a key is answered as usual and its answer (status and body, problems included) is
stored; a later request with the same key and the same body gets that answer replayed,
marked `Idempotent-Replayed: true`, and does nothing again. The same key with another
body, or on another endpoint, answers 409: the client has mixed up its keys.

Keys belong to the principal: two callers may use the same key without meeting. While the
first request is still being answered, a second answers 409 (`idempotency-key-in-use`);
a request that crashed before storing its answer frees its key after `PENDING_LEASE`.
Answers of 500 and above are not stored (the next retry runs again), so a route's own
effect should also be idempotent on `Idempotency.effect_key`, which is stable across
retries with the same key.

In a route (the response model must be given to the decorator, since the route returns
a ready `Response`)::

    @router.post("/{id}/redeem", response_model=GrantOut, responses=IDEMPOTENCY_PROBLEMS)
    async def redeem(grant_id: str, idempotency: IdempotencyDep, ...) -> Response:
        async def act() -> GrantOut:
            ...
        return await idempotency.answer(act)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import TextClause, text

from cjo.activities._base import new_id
from cjo.api.auth import PrincipalDep
from cjo.api.deps import SessionsDep
from cjo.api.problems import PROBLEM_JSON, ApiProblem
from cjo.store.db import SessionFactory, transaction

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a first request may take before its key is taken as abandoned.
PENDING_LEASE = timedelta(seconds=60)
# Visible ASCII only: a key is echoed in problems and logs.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


def body_hash(body: bytes) -> str:
    """SHA-256 of the body; JSON is made canonical first, so spacing and key order do not
    make two equal requests differ."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


class Idempotency:
    """One request's idempotency: its key (if any) and where its answer is kept."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        principal: str,
        key: str | None,
        method_path: str,
        body_digest: str,
    ) -> None:
        self._sessions = sessions
        self.principal = principal
        self.key = key
        self.method_path = method_path
        self.body_digest = body_digest
        # Without a key every request is new: a fresh effect key each time.
        self.effect_key = f"api/{principal}/{key}" if key is not None else f"api/{new_id()}"

    async def answer(
        self, handler: Callable[[], Awaitable[BaseModel]], status_code: int = 200
    ) -> Response:
        """The handler's answer, or the stored answer of the first request with this key."""
        if self.key is None:
            return _json(status_code, (await handler()).model_dump(mode="json"))
        replay = await self._claim()
        if replay is not None:
            return replay
        try:
            result = await handler()
        except ApiProblem as problem:
            if problem.problem.status >= 500:
                await self._release()
            else:
                # Stored as the handlers will answer it, so a replay is byte-for-byte alike.
                answer = problem.problem.model_copy(update={"instance": self._path})
                stored = answer.model_dump(mode="json", exclude_none=True)
                await self._store(problem.problem.status, stored)
            raise
        except BaseException:
            await self._release()
            raise
        body = result.model_dump(mode="json")
        await self._store(status_code, body)
        return _json(status_code, body)

    @property
    def _path(self) -> str:
        return self.method_path.split(" ", 1)[1]

    async def _claim(self) -> Response | None:
        """Take the key for this request (None), or the stored answer to replay."""
        params = {
            "principal": self.principal,
            "key": self.key,
            "method_path": self.method_path,
            "body_hash": self.body_digest,
            "lease": PENDING_LEASE,
        }
        async with transaction(self._sessions) as connection:
            taken = await connection.execute(_CLAIM, params)
            if taken.first() is not None:
                return None
            stored = (await connection.execute(_STORED, params)).one()
            if stored.method_path != self.method_path or stored.body_hash != self.body_digest:
                raise ApiProblem(
                    409,
                    "idempotency-key-reused",
                    f"the Idempotency-Key '{self.key}' was used for another request "
                    f"({stored.method_path}, or another body); use a new key for a new request",
                    title="Idempotency key reused",
                )
            if stored.status is None:
                # A first request that has held the key past its lease crashed: retake it.
                retaken = await connection.execute(_RETAKE, params)
                if retaken.first() is not None:
                    return None
                raise ApiProblem(
                    409,
                    "idempotency-key-in-use",
                    f"a request with the Idempotency-Key '{self.key}' is still being "
                    "answered; retry in a moment",
                    title="Idempotency key in use",
                )
        replay = _json(int(stored.status), stored.response)
        replay.headers[REPLAYED_HEADER] = "true"
        return replay

    async def _store(self, status: int, body: Any) -> None:
        response = json.dumps(body, ensure_ascii=False)
        await self._execute(_STORE, status=status, response=response)

    async def _release(self) -> None:
        await self._execute(_RELEASE)

    async def _execute(self, statement: TextClause, **params: Any) -> None:
        """Run a statement on this request's key, in a transaction of its own."""
        async with transaction(self._sessions) as connection:
            await connection.execute(
                statement, {"principal": self.principal, "key": self.key, **params}
            )


def _json(status: int, body: Any) -> JSONResponse:
    media_type = PROBLEM_JSON if status >= 400 else "application/json"
    return JSONResponse(body, status_code=status, media_type=media_type)


_CLAIM = text(
    """
    INSERT INTO idempotency_records (principal, key, method_path, body_hash)
    VALUES (:principal, :key, :method_path, :body_hash)
    ON CONFLICT (principal, key) DO NOTHING
    RETURNING key
    """
)
_STORED = text(
    "SELECT method_path, body_hash, status, response FROM idempotency_records"
    " WHERE principal = :principal AND key = :key"
)
_STORE = text(
    "UPDATE idempotency_records SET status = :status, response = CAST(:response AS jsonb)"
    " WHERE principal = :principal AND key = :key"
)
_RELEASE = text(
    "DELETE FROM idempotency_records WHERE principal = :principal AND key = :key AND status IS NULL"
)
_RETAKE = text(
    """
    UPDATE idempotency_records SET created_at = now()
    WHERE principal = :principal AND key = :key AND status IS NULL
      AND created_at < now() - CAST(:lease AS interval)
    RETURNING key
    """
)


async def get_idempotency(
    request: Request,
    principal: PrincipalDep,
    sessions: SessionsDep,
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            pattern=KEY_PATTERN,
            description="any unique string (e.g. a UUID): a retry with the same key and "
            "body gets the first answer again; the same key with another body is a 409",
            examples=["3f1c2a9e-7b4d-4e8a-9c1f-5d6e7f8a9b0c"],
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(
        sessions,
        principal=principal.id,
        key=key,
        method_path=f"{request.method} {request.url.path}",
        body_digest=body_hash(await request.body()),
    )


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
