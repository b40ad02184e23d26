"""The audit log: append a row, read rows back. Nothing here changes or removes a row,
and the database refuses it anyway (a trigger on `audit_log`, migration 0003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from cjo.store.db import SessionFactory
from cjo.store.schema import AuditEntry


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuditRow(_Model):
    """One mutating call: who, as what, on which line, did what to what, and the answer."""

    id: int | None = None
    at: datetime | None = None
    actor: str
    role: str
    business_line: str | None
    action: str
    target: str
    request_id: str | None
    status: int | None
    before_hash: str | None
    after_hash: str | None
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditQueryInput(_Model):
    """Filters, all optional; `after_id` pages on (rows come newest first)."""

    since: datetime | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    business_lines: frozenset[str] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    after_id: int | None = None


class AuditPage(_Model):
    rows: list[AuditRow]
    next_id: int | None


class AuditTrail:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def append(self, row: AuditRow) -> int:
        entry = AuditEntry.model_validate(row.model_dump(exclude={"id", "at"}))
        async with self._sessions() as session, session.begin():
            session.add(entry)
            await session.flush()
            assert entry.id is not None
            return entry.id

    async def query(self, request: AuditQueryInput) -> AuditPage:
        statement = select(AuditEntry)
        if request.since is not None:
            statement = statement.where(col(AuditEntry.at) >= request.since)
        if request.actor is not None:
            statement = statement.where(col(AuditEntry.actor) == request.actor)
        if request.action is not None:
            statement = statement.where(col(AuditEntry.action) == request.action)
        if request.target is not None:
            statement = statement.where(col(AuditEntry.target) == request.target)
        if request.business_lines is not None:
            statement = statement.where(
                col(AuditEntry.business_line).in_(sorted(request.business_lines))
            )
        if request.after_id is not None:
            statement = statement.where(col(AuditEntry.id) < request.after_id)
        statement = statement.order_by(col(AuditEntry.id).desc()).limit(request.limit + 1)
        async with self._sessions() as session:
            entries = (await session.exec(statement)).all()
        rows = [AuditRow.model_validate(entry.model_dump()) for entry in entries]
        more = len(rows) > request.limit
        rows = rows[: request.limit]
        return AuditPage(rows=rows, next_id=rows[-1].id if more and rows else None)
