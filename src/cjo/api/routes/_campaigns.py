"""What the campaign routes (`campaigns`, `campaign_review`, `campaign_reports`) share:
the campaign's id in paths, its answer, and finding it as the caller may see it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict

from cjo.activities.runs.campaigns import (
    ApprovalRequiredError,
    CampaignActivities,
    CampaignStateError,
    DuplicateApprovalError,
    SelfApprovalError,
    UnknownCampaignError,
)
from cjo.api.audit import AuditDep
from cjo.api.auth import Principal, visible
from cjo.api.problems import ApiProblem, conflict, not_found
from cjo.store.schema import Campaign

CampaignId = Annotated[str, Path(min_length=1, max_length=64)]
# Settings a campaign carries into its workflow.
TUNING = ("rate_per_second", "page_size")

CAMPAIGN_EXAMPLE: dict[str, Any] = {
    "id": "4c1d9e0b2a7f4e31",
    "business_line": "retail",
    "journey": "dormant-savers-reactivation",
    "journey_version": "9f2c4e1a7b3d5c60",
    "state": "submitted",
    "created_by": "key_1a2b3c4d5e6f7a8b",
    "settings": {"rate_per_second": 50.0},
    "created_at": "2026-11-26T09:00:00Z",
    "updated_at": "2026-11-26T09:05:00Z",
    "launched_at": None,
    "ended_at": None,
    "submitted_by": "key_1a2b3c4d5e6f7a8b",
    "submitted_at": "2026-11-26T09:05:00Z",
    "audience_size": 152340,
    "approvals_required": 2,
    "live": None,
}


class CampaignLive(BaseModel):
    """What the campaign's workflow says of itself right now."""

    state: str
    fire: int
    enrolled: int


class CampaignOut(BaseModel):
    """A campaign. `audience_size` and `approvals_required` are set when it is submitted."""

    model_config = ConfigDict(json_schema_extra={"examples": [CAMPAIGN_EXAMPLE]})

    id: str
    business_line: str
    journey: str
    journey_version: str
    state: str
    created_by: str | None
    settings: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    launched_at: datetime | None
    ended_at: datetime | None
    submitted_by: str | None = None
    submitted_at: datetime | None = None
    audience_size: int | None = None
    approvals_required: int = 1
    live: CampaignLive | None = None


def campaign_out(campaign: Campaign, live: CampaignLive | None = None) -> CampaignOut:
    return CampaignOut.model_validate({**campaign.model_dump(), "live": live})


async def existing_campaign(campaigns: CampaignActivities, campaign_id: str) -> Campaign:
    """The campaign, or 404 when there is none."""
    campaign = await campaigns.get(campaign_id)
    if campaign is None:
        raise not_found(f"no campaign {campaign_id}")
    return campaign


async def visible_campaign(
    campaigns: CampaignActivities, principal: Principal, campaign_id: str
) -> Campaign:
    """The campaign, or 404 when there is none or it is of a line the caller does not see."""
    campaign = await existing_campaign(campaigns, campaign_id)
    visible(principal, campaign.business_line, "campaign", campaign_id)
    return campaign


@contextmanager
def review_problems(campaign_id: str) -> Iterator[None]:
    """The review's refusals as problems: who may not (403) and what cannot be (409)."""
    try:
        yield
    except UnknownCampaignError:
        raise not_found(f"no campaign {campaign_id}") from None
    except SelfApprovalError as error:
        raise ApiProblem(403, "self-approval", error.message, title="Self-approval") from None
    except ApprovalRequiredError as error:
        raise ApiProblem(
            403, "approval-required", error.message, title="Approval required"
        ) from None
    except DuplicateApprovalError as error:
        raise ApiProblem(
            409, "duplicate-approval", error.message, title="Approved already"
        ) from None
    except CampaignStateError as error:
        raise conflict(error.message) from None


async def audited_campaign(
    audit: AuditDep, campaigns: CampaignActivities, principal: Principal, campaign_id: str
) -> Campaign:
    """The visible campaign, named as the audit row's target with its state before."""
    campaign = await visible_campaign(campaigns, principal, campaign_id)
    audit.target("campaign", campaign.id, campaign.business_line)
    audit.before(campaign_out(campaign))
    return campaign


def audited_after(audit: AuditDep, campaign: Campaign) -> CampaignOut:
    out = campaign_out(campaign)
    audit.after(out)
    return out
