"""Reading campaigns: the list (`GET /v1/campaigns`) and who is at or past a step."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from cjo.activities.runs.campaigns import CampaignPosition, CampaignState, UnknownCampaignError
from cjo.api.auth import Viewer, visible
from cjo.api.deps import CampaignsDep, StatsDep
from cjo.api.paging import Cursor, Limit, decode_cursor, encode_cursor
from cjo.api.problems import not_found, problem_responses
from cjo.api.routes._campaigns import (
    CAMPAIGN_EXAMPLE,
    CampaignId,
    CampaignOut,
    campaign_out,
    visible_campaign,
)
from cjo.control.stats import (
    StepUser,
    StepUserPosition,
    StepUsersInput,
    StepUsersState,
    UnknownStepError,
)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
STATES: tuple[str, ...] = get_args(CampaignState)


class CampaignsPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [CAMPAIGN_EXAMPLE], "next_cursor": None}]}
    )

    items: list[CampaignOut]
    next_cursor: str | None


class StepUsersPage(BaseModel):
    """Runs at (or past) the step, ordered by user and run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "campaign_id": "4c1d9e0b2a7f4e31",
                    "step": "await_login",
                    "state": "passed",
                    "items": [
                        {
                            "user_id": "u-10293",
                            "run_key": "journey/retail/dormant-savers-reactivation/u-10293#1",
                            "status": "ended",
                            "current_step": None,
                            "entered_at": "2026-12-01T02:00:00Z",
                            "outcome": "timeout",
                            "at": "2026-12-04T02:00:00Z",
                        }
                    ],
                    "next_cursor": "eyJ1c2VyX2lkIjoidS0xMDI5MyJ9",
                }
            ]
        }
    )

    campaign_id: str
    step: str
    state: StepUsersState
    items: list[StepUser]
    next_cursor: str | None


@router.get("", summary="List campaigns", responses=problem_responses(401, 403, 404, 422))
async def list_campaigns(
    principal: Viewer,
    campaigns: CampaignsDep,
    business_line: Annotated[str | None, Query(max_length=64)] = None,
    journey: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[
        str | None, Query(pattern=f"^({'|'.join(STATES)})$", description="one state")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CampaignsPage:
    """The campaigns of the caller's business lines, newest first."""
    if business_line is not None:
        visible(principal, business_line, "business line", business_line)
    page = await campaigns.page(
        business_lines=None if principal.sees_all else principal.business_lines,
        business_line=business_line,
        journey=journey,
        state=state,
        limit=limit,
        after=decode_cursor(cursor, CampaignPosition),
    )
    return CampaignsPage(
        items=[campaign_out(campaign) for campaign in page.campaigns],
        next_cursor=encode_cursor(page.next),
    )


@router.get(
    "/{campaign_id}/steps/{step_id}/users",
    summary="List the users at or past a step",
    responses=problem_responses(401, 403, 404, 422),
)
async def step_users(
    campaign_id: CampaignId,
    step_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: Viewer,
    campaigns: CampaignsDep,
    stats: StatsDep,
    state: Annotated[
        StepUsersState,
        Query(description="`at`: waiting at the step now; `passed`: went through it"),
    ] = "at",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> StepUsersPage:
    """Who is at a step of the campaign's journey now, or has passed it, page by page.

    For `passed`, each run's latest outcome at the step and when it happened.
    """
    await visible_campaign(campaigns, principal, campaign_id)
    try:
        page = await stats.step_users(
            StepUsersInput(
                campaign_id=campaign_id,
                step_id=step_id,
                state=state,
                limit=limit,
                after=decode_cursor(cursor, StepUserPosition),
            )
        )
    except UnknownCampaignError:
        raise not_found(f"no campaign {campaign_id}") from None
    except UnknownStepError as error:
        raise not_found(error.message) from None
    return StepUsersPage(
        campaign_id=campaign_id,
        step=step_id,
        state=state,
        items=page.users,
        next_cursor=encode_cursor(page.next),
    )
