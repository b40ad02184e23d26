"""API keys: who may call the API, with which role, for which business lines."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import text_array, timestamp


class ApiKey(SQLModel, table=True):
    """One API key. Only the SHA-256 of the key is kept: the key itself is shown once.

    A key is 32 random bytes behind its id, so a plain SHA-256 cannot be reversed by
    guessing (unlike a password, there is no small space of likely keys to try).
    """

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=128)
    secret_hash: str = Field(max_length=64)
    role: str = Field(max_length=16)
    # The business lines the key may see; "*" is every line.
    business_lines: list[str] = Field(default_factory=list, sa_column=text_array())
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    revoked_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
