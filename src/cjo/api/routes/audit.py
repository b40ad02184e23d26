"""The audit log, read-only (`GET /v1/audit`, admin). No route changes or deletes a row."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from cjo.activities.audit_trail import AuditQueryInput, AuditTrail
from cjo.api.auth import Principal, require
from cjo.api.deps import SessionsDep
from cjo.api.problems import ApiProblem, problem_responses

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    business_line: str | None
    action: str
    target: str
    request_id: str | None
    status: int | None
    before_hash: str | None
    after_hash: str | None
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


@router.get("", responses=problem_responses(401, 403, 422))
async def list_audit(
    principal: Annotated[Principal, require("admin")],
    sessions: SessionsDep,
    since: Annotated[AwareDatetime | None, Query(description="rows at or after")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="key id or JWT sub")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. campaigns.launch")] = None,
    target: Annotated[str | None, Query(max_length=400, description="e.g. campaign/<id>")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> AuditPageOut:
    """Newest first. An admin of some business lines sees the rows of those lines only;
    rows of no line (shared customer records) are for admins of every line (`*`)."""
    if cursor is not None and not cursor.isdigit():
        raise ApiProblem(422, "invalid-request", "the cursor is not one this API gave")
    page = await AuditTrail(sessions).query(
        AuditQueryInput(
            since=since,
            actor=actor,
            action=action,
            target=target,
            business_lines=None if principal.sees_all else principal.business_lines,
            limit=limit,
            after_id=int(cursor) if cursor is not None else None,
        )
    )
    return AuditPageOut(
        items=[AuditEntryOut.model_validate(row.model_dump()) for row in page.rows],
        next_cursor=None if page.next_id is None else str(page.next_id),
    )
