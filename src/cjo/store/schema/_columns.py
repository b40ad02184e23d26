"""Column helpers: PostgreSQL types SQLModel has no shorthand for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, DateTime, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB


def timestamp(*, nullable: bool = False, default_now: bool = True, index: bool = False) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if default_now else None,
        index=index,
    )


def jsonb(*, default: str = "'{}'::jsonb", nullable: bool = False) -> Any:
    return Column(JSONB, nullable=nullable, server_default=text(default) if default else None)


def text_array(*, nullable: bool = False) -> Any:
    return Column(ARRAY(Text), nullable=nullable, server_default=text("'{}'::text[]"))
