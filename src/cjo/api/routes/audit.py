"""The audit log, read-only (`GET /v1/audit`, admin). No route changes or deletes a row."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict

from cjo.api.auth import Admin
from cjo.api.deps import SessionsDep
from cjo.api.problems import ApiProblem, problem_responses
from cjo.control.audit_trail import AuditQueryInput, AuditRow, AuditTrail

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntryOut(AuditRow):
    """One mutating call: who, as what, on which line, did what to what, and the answer."""

    # Stored rows have all three.
    id: int
    at: datetime
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 1042,
                            "at": "2026-11-26T09:20:00Z",
                            "actor": "key_9f8e7d6c5b4a3f2e",
                            "role": "approver",
                            "business_line": "retail",
                            "action": "campaigns.approve",
                            "target": "campaign/4c1d9e0b2a7f4e31",
                            "request_id": "0b7c5e2f9a4d4c61a3e8f1d2c4b6a890",
                            "status": 200,
                            "before_hash": "3a7bd3e2360a3d29eea436fcfb7e44c7"
                            "35d117c42d1c1835420b6b9942dd4f1b",
                            "after_hash": "9c56cc51b374c3ba189210d5b6d4bf57"
                            "790d351c96c47c02190ecf1e430635ab",
                            "detail": {
                                "method": "POST",
                                "path": "/v1/campaigns/4c1d9e0b2a7f4e31/approve",
                                "principal": "risk desk",
                                "approval": {"journey_version": "9f2c4e1a7b3d5c60"},
                            },
                        }
                    ],
                    "next_cursor": "1042",
                }
            ]
        }
    )

    items: list[AuditEntryOut]
    next_cursor: str | None


@router.get("", summary="Read the audit log", responses=problem_responses(401, 403, 422))
async def list_audit(
    principal: Admin,
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
