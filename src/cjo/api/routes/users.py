"""Profiles, consents and a user's journeys (`/v1/users`).

Tenancy: a profile and its consents are the customer's, shared by every business line
(a bank has one record of a customer), so any principal with the role reads and writes
them. What a line did with the customer (runs, messages, inbox items) is that line's: a
principal sees only its own lines' (a page may then hold fewer than `limit` items; follow
`next_cursor`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cjo.activities.people.profiles import (
    Channel,
    ConsentChange,
    ProfileInput,
    SetConsentsInput,
    UpsertProfilesInput,
)
from cjo.api.audit import AuditDep
from cjo.api.auth import Operator, Viewer
from cjo.api.deps import ProfilesDep, StateDep, StatsDep
from cjo.api.paging import Cursor, Limit, decode_cursor, encode_cursor
from cjo.api.problems import ApiProblem, not_found, problem_responses, too_large
from cjo.api.routes._users import UserIdPath, known_profile, stored_profile
from cjo.control.stats import JourneyRun, RunPosition, UserJourneysInput
from cjo.steps.run import UserProfile

router = APIRouter(prefix="/v1/users", tags=["users"])


_PROFILE_FIELDS_EXAMPLE: dict[str, Any] = {
    "name": "李雷",
    "phone": "13800000001",
    "email": "li.lei@example.com",
    "locale": "zh-CN",
    "timezone": "Asia/Shanghai",
    "birthday": "1990-05-17",
    "lifecycle": "growing",
    "tags": ["payroll"],
    "attrs": {"aum": 82000, "card_tier": "gold"},
    "addresses": {"push": "device-7f3a9c"},
}
_PROFILE_EXAMPLE: dict[str, Any] = {
    **_PROFILE_FIELDS_EXAMPLE,
    "id": "u-10293",
    "created_at": "2026-03-01T08:00:00Z",
    "consents": {"sms": True, "email": True, "push": False},
}
_RUN_EXAMPLE: dict[str, Any] = {
    "run_key": "journey/retail/dormant-savers-reactivation/u-10293#1",
    "journey": "dormant-savers-reactivation",
    "business_line": "retail",
    "campaign_id": "4c1d9e0b2a7f4e31",
    "plan_version": "9f2c4e1a7b3d5c60",
    "status": "ended",
    "current_step": None,
    "end_reason": "converted",
    "entered_at": "2026-12-01T02:00:00Z",
    "ended_at": "2026-12-02T09:12:00Z",
    "converted_at": "2026-12-02T09:12:00Z",
    "variant": "rate_led",
    "holdout": False,
    "path": [
        {
            "step": "message_test",
            "type": "split",
            "outcome": "rate_led",
            "at": "2026-12-01T02:00:00Z",
        },
        {"step": "rate_sms", "type": "send", "outcome": "sent", "at": "2026-12-01T02:00:01Z"},
        {
            "step": "await_login",
            "type": "wait_for",
            "outcome": "event",
            "at": "2026-12-02T09:12:00Z",
        },
    ],
}


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
        "content": {
            "application/json": {
                "schema": _profile_fields_schema(),
                "example": _PROFILE_FIELDS_EXAMPLE,
            }
        },
    }
}


class UpsertedOut(BaseModel):
    """`created`: the profile is new; else a stored one was changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "u-10293", "created": True}]})

    id: str
    created: bool


class UserBatch(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "users": [
                        {"id": "u-10293", **_PROFILE_FIELDS_EXAMPLE},
                        {"id": "u-10294", "name": "韩梅梅", "tags": ["new-card"]},
                    ]
                }
            ]
        }
    )

    users: list[ProfileInput]


class BatchOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"created": 1, "updated": 1}]})

    created: int
    updated: int


class ConsentsBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"consents": {"sms": False, "email": True}, "source": "branch-form"}]
        }
    )

    consents: dict[Channel, bool] = Field(min_length=1)
    source: str = Field(min_length=1, max_length=64, description="where the consent came from")


class ConsentsOut(BaseModel):
    """`superseded`: channels where a later change, already stored, wins."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "u-10293", "applied": ["email", "sms"], "superseded": []}]
        }
    )

    user_id: str
    applied: list[str]
    superseded: list[str]


class JourneysPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_RUN_EXAMPLE], "next_cursor": None}]}
    )

    items: list[JourneyRun]
    next_cursor: str | None


@router.put(
    "/{user_id}",
    summary="Create or change a profile",
    openapi_extra=_PROFILE_BODY,
    responses=problem_responses(403, 422),
)
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
    audit.before(await stored_profile(profiles, user_id))
    result = await profiles.upsert_profiles(
        UpsertProfilesInput(profiles=[profile], at=datetime.now(UTC))
    )
    audit.after(await stored_profile(profiles, user_id))
    return UpsertedOut(id=user_id, created=result.created == 1)


@router.post(
    "/batch",
    summary="Create or change profiles in a batch",
    responses=problem_responses(403, 413, 422),
)
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


@router.get(
    "/{user_id}",
    summary="Get a profile",
    responses={
        200: {"content": {"application/json": {"example": _PROFILE_EXAMPLE}}},
        **problem_responses(404, 422),
    },
)
async def get_user(_principal: Viewer, user_id: UserIdPath, profiles: ProfilesDep) -> UserProfile:
    """The profile: its fields, attributes, addresses and marketing consents per channel."""
    return await known_profile(profiles, user_id)


@router.put(
    "/{user_id}/consents",
    summary="Grant or withdraw consents",
    responses=problem_responses(403, 404, 422),
)
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


@router.get(
    "/{user_id}/journeys",
    summary="List a user's journey runs",
    responses=problem_responses(404, 422),
)
async def get_journeys(
    principal: Viewer,
    user_id: UserIdPath,
    profiles: ProfilesDep,
    stats: StatsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JourneysPage:
    """The user's runs, newest first: where each went, step by step, and how it ended."""
    await known_profile(profiles, user_id)
    page = await stats.user_journeys(
        UserJourneysInput(user_id=user_id, limit=limit, after=decode_cursor(cursor, RunPosition))
    )
    runs = [run for run in page.runs if principal.sees(run.business_line)]
    return JourneysPage(items=runs, next_cursor=encode_cursor(page.next))
