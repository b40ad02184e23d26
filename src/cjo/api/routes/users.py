"""Profiles, consents and a user's journeys (`/v1/users`).

Tenancy: a profile and its consents are the customer's, shared by every business line
(a bank has one record of a customer), so any principal with the role reads and writes
them. What a line did with the customer (runs, messages, inbox items) is that line's: a
principal sees only its own lines' (a page may then hold fewer than `limit` items; follow
`next_cursor`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from cjo.activities.profiles import (
    Channel,
    ConsentChange,
    ProfileActivities,
    ProfileContextInput,
    ProfileInput,
    SetConsentsInput,
    UpsertProfilesInput,
    UserProfile,
)
from cjo.activities.stats import JourneyRun, RunPosition, UserJourneysInput
from cjo.api.audit import AuditDep
from cjo.api.auth import Principal, require
from cjo.api.deps import ProfilesDep, StateDep, StatsDep
from cjo.api.problems import ApiProblem, not_found, problem_responses, too_large

router = APIRouter(prefix="/v1/users", tags=["users"])
UserIdPath = Annotated[str, Path(min_length=1, max_length=128)]
Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]


def _profile_fields_schema() -> dict[str, Any]:
    """ProfileInput's schema without `id`, which the path gives."""
    schema = ProfileInput.model_json_schema()
    schema["properties"].pop("id")
    schema["required"] = [name for name in schema.get("required", []) if name != "id"]
    schema["title"] = "ProfileFields"
    return schema


_PROFILE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _profile_fields_schema()}},
    }
}


class UpsertedOut(BaseModel):
    id: str
    created: bool


class UserBatch(BaseModel):
    users: list[ProfileInput]


class BatchOut(BaseModel):
    created: int
    updated: int


class ConsentsBody(BaseModel):
    consents: dict[Channel, bool] = Field(min_length=1)
    source: str = Field(min_length=1, max_length=64, description="where the consent came from")


class ConsentsOut(BaseModel):
    """`superseded`: channels where a later change, already stored, wins."""

    user_id: str
    applied: list[str]
    superseded: list[str]


class JourneysPage(BaseModel):
    items: list[JourneyRun]
    next_cursor: str | None


@router.put("/{user_id}", openapi_extra=_PROFILE_BODY, responses=problem_responses(422))
async def put_user(
    _principal: Operator,
    audit: AuditDep,
    user_id: UserIdPath,
    body: Annotated[dict[str, Any], Body()],
    profiles: ProfilesDep,
) -> UpsertedOut:
    """Create or change a profile; fields left out keep what is stored."""
    if body.get("id", user_id) != user_id:
        raise ApiProblem(422, "invalid-request", "the body's id differs from the path's")
    try:
        profile = ProfileInput.model_validate({**body, "id": user_id})
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
        ) from None
    audit.target("user", user_id)
    audit.before(await _stored_profile(profiles, user_id))
    result = await profiles.upsert_profiles(
        UpsertProfilesInput(profiles=[profile], at=datetime.now(UTC))
    )
    audit.after(await _stored_profile(profiles, user_id))
    return UpsertedOut(id=user_id, created=result.created == 1)


@router.post("/batch", responses=problem_responses(413, 422))
async def post_users(
    _principal: Operator, audit: AuditDep, state: StateDep, batch: UserBatch, profiles: ProfilesDep
) -> BatchOut:
    """Up to 1,000 profiles at once (`max_batch`); a repeated id applies in order."""
    limit = state.settings.max_batch
    if len(batch.users) > limit:
        raise too_large(f"{len(batch.users)} profiles; the limit is {limit} a request")
    audit.target("users", f"batch of {len(batch.users)}")
    audit.after(batch.users)
    result = await profiles.upsert_profiles(
        UpsertProfilesInput(profiles=batch.users, at=datetime.now(UTC))
    )
    return BatchOut(created=result.created, updated=result.updated)


@router.get("/{user_id}", responses=problem_responses(404))
async def get_user(_principal: Viewer, user_id: UserIdPath, profiles: ProfilesDep) -> UserProfile:
    return await _profile(profiles, user_id)


@router.put("/{user_id}/consents", responses=problem_responses(404, 422))
async def put_consents(
    _principal: Operator,
    audit: AuditDep,
    user_id: UserIdPath,
    body: ConsentsBody,
    profiles: ProfilesDep,
) -> ConsentsOut:
    """Grant or withdraw marketing consent per channel; an older change than stored loses."""
    audit.target("user", user_id)
    change = ConsentChange(
        user_id=user_id, consents=body.consents, source=body.source, at=datetime.now(UTC)
    )
    (outcome,) = (await profiles.set_consents(SetConsentsInput(requests=[change]))).results
    if not outcome.found:
        raise not_found(f"no user {user_id}")
    audit.after({"consents": body.consents, "source": body.source, "applied": outcome.applied})
    return ConsentsOut(user_id=user_id, applied=outcome.applied, superseded=outcome.superseded)


@router.get("/{user_id}/journeys", responses=problem_responses(404, 422))
async def get_journeys(
    principal: Viewer,
    user_id: UserIdPath,
    profiles: ProfilesDep,
    stats: StatsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> JourneysPage:
    """The user's runs, newest first: where each went, step by step, and how it ended."""
    await _profile(profiles, user_id)
    page = await stats.user_journeys(
        UserJourneysInput(user_id=user_id, limit=limit, after=_decode(cursor))
    )
    runs = [run for run in page.runs if principal.sees(run.business_line)]
    return JourneysPage(items=runs, next_cursor=_encode(page.next))


async def _stored_profile(profiles: ProfileActivities, user_id: str) -> UserProfile | None:
    (profile,) = (await profiles.profile_context(ProfileContextInput(user_ids=[user_id]))).profiles
    return profile


async def _profile(profiles: ProfileActivities, user_id: str) -> UserProfile:
    (profile,) = (await profiles.profile_context(ProfileContextInput(user_ids=[user_id]))).profiles
    if profile is None:
        raise not_found(f"no user {user_id}")
    return profile


def _encode(position: RunPosition | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(position.model_dump_json().encode()).decode()


def _decode(cursor: str | None) -> RunPosition | None:
    if cursor is None:
        return None
    try:
        return RunPosition.model_validate_json(base64.urlsafe_b64decode(cursor.encode()))
    except (ValidationError, binascii.Error, ValueError):
        raise ApiProblem(422, "invalid-request", "the cursor is not one this API gave") from None
