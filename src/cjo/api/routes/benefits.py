"""Benefits (goods): a benefit's stock and budget, a user's grants, redeem (核销) and revoke.

Redeem and revoke take an `Idempotency-Key`: a retry with the same key and body gets the
first answer again and changes nothing; the key also keys the change itself, so even a
retry after a lost answer redeems once. A grant that cannot change answers 409 (redeemed,
revoked or expired already), or 404 when it does not exist or is of a line the caller
does not see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from cjo.activities.benefits.grants import BenefitActivities
from cjo.activities.benefits.models import (
    GrantChangeRequest,
    GrantPosition,
    GrantView,
    RedeemGrantInput,
    RevokeGrantInput,
    UserGrantsInput,
)
from cjo.api.audit import AuditDep
from cjo.api.auth import Operator, Viewer, visible
from cjo.api.deps import ProfilesDep, ResourcesDep, SessionsDep
from cjo.api.idempotency import IdempotencyDep
from cjo.api.paging import Cursor, Limit, decode_cursor, encode_cursor
from cjo.api.problems import ApiProblem, not_found, problem_responses
from cjo.api.routes._resources import LineQuery, resource_head
from cjo.api.routes._users import UserIdPath, known_profile
from cjo.dsl import BenefitSpec

router = APIRouter(tags=["benefits"])
GrantId = Annotated[str, Path(min_length=1, max_length=64)]
_GRANT_EXAMPLE: dict[str, Any] = {
    "id": "b5e0c1d2a3f44e5f",
    "business_line": "credit-card",
    "benefit": "activation-cashback",
    "benefit_version": "7a6b5c4d3e2f1a09",
    "benefit_type": "cashback",
    "user_id": "u-10293",
    "quantity": 1,
    "value": 20.0,
    "unit": "CNY",
    "status": "redeemed",
    "code": "CB-8K2M-Q7XZ",
    "workflow_id": "journey/credit-card/card-activation/u-10293/c-1",
    "step_id": "cashback",
    "granted_at": "2026-11-26T09:00:00Z",
    "expires_at": "2026-12-26T09:00:00Z",
    "redeemed_at": "2026-11-27T10:30:00Z",
    "revoked_at": None,
}


class BenefitStatusOut(BaseModel):
    """The newest version's limits against what has been handed out (revoked grants give
    their units and value back; expired ones keep them). Remaining amounts are None where
    the benefit sets no limit."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "benefit": "activation-cashback",
                    "business_line": "credit-card",
                    "version": "7a6b5c4d3e2f1a09",
                    "type": "cashback",
                    "value": 20.0,
                    "unit": "CNY",
                    "stock": 10000,
                    "budget": 200000.0,
                    "units_granted": 1532,
                    "value_granted": 30640.0,
                    "units_remaining": 8468,
                    "value_remaining": 169360.0,
                    "grants": {"granted": 1200, "redeemed": 300, "expired": 32, "revoked": 4},
                }
            ]
        }
    )

    benefit: str
    business_line: str
    version: str
    type: str
    value: float
    unit: str
    stock: int | None
    budget: float | None
    units_granted: int
    value_granted: float
    units_remaining: int | None
    value_remaining: float | None
    grants: dict[str, int]


class GrantOut(GrantView):
    model_config = ConfigDict(json_schema_extra={"examples": [_GRANT_EXAMPLE]})


class GrantsPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_GRANT_EXAMPLE], "next_cursor": None}]}
    )

    items: list[GrantOut]
    next_cursor: str | None


class GrantChange(BaseModel):
    """Why, for the audit log; optional."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "redeemed at branch 0421"}]},
    )

    reason: str | None = Field(default=None, max_length=500)


@router.get(
    "/v1/benefits/{name}/status",
    summary="Get a benefit's stock and budget status",
    responses=problem_responses(401, 403, 404, 422),
)
async def benefit_status(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    principal: Viewer,
    resources: ResourcesDep,
    sessions: SessionsDep,
    business_line: LineQuery = None,
) -> BenefitStatusOut:
    """Stock and budget of a benefit: set, used and left, and its grants by status."""
    head = await resource_head(resources, principal, "Benefit", name, business_line)
    published = await resources.get("Benefit", head.business_line, name, head.latest_version)
    if published is None:
        raise not_found(f"no Benefit {name}")
    spec = BenefitSpec.model_validate(published.document["spec"])
    status = await BenefitActivities(sessions).status(head.business_line, name, spec)
    return BenefitStatusOut(
        benefit=name,
        business_line=head.business_line,
        version=head.latest_version,
        type=spec.type,
        value=spec.value,
        unit=spec.unit,
        stock=spec.stock,
        budget=spec.budget,
        units_granted=status.units_granted,
        value_granted=status.value_granted,
        units_remaining=status.units_remaining,
        value_remaining=status.value_remaining,
        grants=status.grants,
    )


@router.get(
    "/v1/users/{user_id}/grants",
    summary="List a user's grants",
    tags=["users"],
    responses=problem_responses(401, 403, 404, 422),
)
async def user_grants(
    user_id: UserIdPath,
    principal: Viewer,
    profiles: ProfilesDep,
    sessions: SessionsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> GrantsPage:
    """The user's grants in the caller's business lines, newest first."""
    await known_profile(profiles, user_id)
    page = await BenefitActivities(sessions).user_grants(
        UserGrantsInput(
            user_id=user_id,
            business_lines=None if principal.sees_all else sorted(principal.business_lines),
            limit=limit,
            after=decode_cursor(cursor, GrantPosition),
        )
    )
    return GrantsPage(
        items=[GrantOut.model_validate(grant.model_dump()) for grant in page.grants],
        next_cursor=encode_cursor(page.next),
    )


Action = Literal["redeem", "revoke"]
Change = Callable[[Action], Awaitable[Response]]
_CHANGE_PROBLEMS = problem_responses(401, 403, 404, 409, 422)
_DONE = {"redeem": "redeemed", "revoke": "revoked"}
_REFUSED = {
    "already_redeemed": "has been redeemed already",
    "already_revoked": "has been revoked",
    "expired": "has expired",
}


def _change_of(
    grant_id: GrantId,
    principal: Operator,
    sessions: SessionsDep,
    idempotency: IdempotencyDep,
    audit: AuditDep,
    body: Annotated[GrantChange | None, Body()] = None,
) -> Change:
    """Redeeming or revoking the grant in the path, found as the caller may see it, once
    per `Idempotency-Key`, and named in the audit row with its state before and after."""

    async def change(action: Action) -> Response:
        benefits = BenefitActivities(sessions)
        grant = await benefits.find_grant(grant_id)
        if grant is None:
            raise not_found(f"no grant {grant_id}")
        visible(principal, grant.business_line, "grant", grant_id)
        audit.target("grant", grant_id, grant.business_line)
        audit.before(grant)
        if body is not None and body.reason:
            audit.detail["reason"] = body.reason

        async def act() -> GrantOut:
            request = GrantChangeRequest(
                key=idempotency.effect_key, grant_id=grant_id, at=datetime.now(UTC)
            )
            if action == "redeem":
                (outcome,) = (await benefits.redeem(RedeemGrantInput(requests=[request]))).results
            else:
                (outcome,) = (await benefits.revoke(RevokeGrantInput(requests=[request]))).results
            if outcome.outcome == "not_found":
                raise not_found(f"no grant {grant_id}")
            if outcome.outcome in _REFUSED:
                raise ApiProblem(
                    409,
                    "grant-settled",
                    f"grant {grant_id} {_REFUSED[outcome.outcome]}; "
                    f"it cannot be {_DONE[action]} now",
                    title="Grant settled",
                )
            changed = await benefits.find_grant(grant_id)
            assert changed is not None  # grants are never deleted
            audit.after(changed)
            return GrantOut.model_validate(changed.model_dump())

        return await idempotency.answer(act)

    return change


ChangeDep = Annotated[Change, Depends(_change_of)]


@router.post(
    "/v1/grants/{grant_id}/redeem",
    summary="Redeem a grant (idempotent)",
    response_model=GrantOut,
    responses=_CHANGE_PROBLEMS,
)
async def redeem_grant(change: ChangeDep) -> Response:
    """Redeem (核销) a granted benefit: granted → redeemed. Send an `Idempotency-Key`."""
    return await change("redeem")


@router.post(
    "/v1/grants/{grant_id}/revoke",
    summary="Revoke a grant (idempotent)",
    response_model=GrantOut,
    responses=_CHANGE_PROBLEMS,
)
async def revoke_grant(change: ChangeDep) -> Response:
    """Revoke a granted benefit: its units and value go back to the stock and budget."""
    return await change("revoke")
