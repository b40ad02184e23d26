"""API keys: minting, looking up and revoking the keys principals call the API with.

A key reads `<id>.<secret>`: the id finds the row, the SHA-256 of the whole key must
match the stored hash (compared in constant time). The secret is 32 random bytes, so the
hash alone cannot be turned back into a working key. The key itself is never stored: it is
shown once, when minted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlmodel import col, select

from cjo.activities._base import ActivityError
from cjo.store.db import SessionFactory, transaction
from cjo.store.schema import ApiKey

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")
ALL_BUSINESS_LINES = "*"
KEY_ID_PREFIX = "key_"


class InvalidKeyRequestError(ActivityError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiKeyInfo(_Model):
    """A key as stored, without anything that would let one call with it."""

    id: str
    name: str
    role: Role
    business_lines: list[str]
    created_by: str | None
    created_at: datetime | None
    revoked_at: datetime | None


class CreateApiKeyInput(_Model):
    name: str = Field(min_length=1, max_length=128)
    role: Role
    business_lines: list[str] = Field(min_length=1)
    created_by: str | None = None


class CreatedApiKey(_Model):
    """`key` is the only copy of the key there will ever be."""

    key: str
    info: ApiKeyInfo


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create(self, request: CreateApiKeyInput) -> CreatedApiKey:
        lines = sorted(set(request.business_lines))
        if any(not line.strip() or len(line) > 64 for line in lines):
            raise InvalidKeyRequestError("business lines are 1 to 64 characters each")
        key_id = KEY_ID_PREFIX + secrets.token_hex(8)
        key = f"{key_id}.{secrets.token_urlsafe(32)}"
        row = ApiKey(
            id=key_id,
            name=request.name,
            secret_hash=hash_key(key),
            role=request.role,
            business_lines=lines,
            created_by=request.created_by,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        async with self._sessions() as session:
            stored = await session.get(ApiKey, key_id)
        assert stored is not None
        return CreatedApiKey(key=key, info=_info(stored))

    async def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The key's info if it is a live key, else None (unknown, wrong or revoked)."""
        key_id, dot, _secret = key.partition(".")
        if not dot or not key_id.startswith(KEY_ID_PREFIX) or len(key_id) > 32:
            return None
        async with self._sessions() as session:
            row = await session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, hash_key(key)):
            return None
        return _info(row)

    async def revoke(self, key_id: str, at: datetime | None = None) -> bool:
        """Revoke a live key; False when there is no such live key."""
        async with transaction(self._sessions) as connection:
            result = await connection.execute(
                update(ApiKey)
                .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
                .values(revoked_at=at or datetime.now(UTC))
            )
        return result.rowcount == 1

    async def list(self) -> list[ApiKeyInfo]:
        async with self._sessions() as session:
            rows = (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all()
        return [_info(row) for row in rows]


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo.model_validate(row.model_dump(exclude={"secret_hash"}))
