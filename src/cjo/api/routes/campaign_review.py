"""The maker-checker review of a campaign: change, submit, approve, reject, approvals.

- `PATCH /v1/campaigns/{id}` (operator) re-pins the journey version or changes the
  settings before launch. Any change voids every approval and returns a submitted or
  approved campaign to draft: an approval is of exactly what it saw. A campaign always
  pins one version, so publishing a newer journey version does not touch it; moving to the
  new version is this PATCH, and needs a new review.
- `submit` (operator): draft → submitted. The audience is measured now: the segment's
  count for an audience journey; for an event-triggered journey, whose entrants are not
  known in advance, every known customer (the most who could enter). Either is capped by
  the journey's `maxEntries`. Above `approval_second_above` (a setting) two approvals by
  two different approvers are needed, else one.
- `approve` (approver, never the submitter): records the approval of the pinned journey
  version; the campaign is approved once it has the approvals it needs. The same approver
  approving again is refused (409): it does not count twice.
- `reject` (approver): submitted or approved → draft, voiding the approvals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from cjo.activities.people.segments import CountSegmentInput, SegmentActivities
from cjo.activities.runs.campaigns import CampaignActivities
from cjo.api.audit import AuditDep
from cjo.api.auth import Approver, Operator, Viewer
from cjo.api.deps import CampaignsDep, ResourcesDep, SessionsDep, StateDep
from cjo.api.problems import ApiProblem, conflict, problem_responses
from cjo.api.routes._campaigns import (
    TUNING,
    CampaignId,
    CampaignOut,
    audited_after,
    audited_campaign,
    review_problems,
    visible_campaign,
)
from cjo.dsl import Plan
from cjo.store.db import SessionFactory

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
_REVIEW_PROBLEMS = problem_responses(401, 403, 404, 409, 422)


class CampaignChange(BaseModel):
    """What may change before launch; fields left out keep their value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": "0c5e7a9b1d3f2e48"}, {"page_size": 500}]},
    )

    version: str | None = Field(default=None, description="another published journey version")
    rate_per_second: float | None = Field(default=None, gt=0, description="enrolment rate")
    page_size: int | None = Field(default=None, ge=1, le=10_000, description="enrolment page")


class Approval(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"journey_version": "9f2c4e1a7b3d5c60", "comment": "copy checked"}]
        },
    )

    journey_version: str | None = Field(
        default=None,
        description="the journey version reviewed; refused (409) if the campaign now pins another",
    )
    comment: str | None = Field(default=None, max_length=1000)


class Rejection(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "the SMS lacks the opt-out line"}]},
    )

    reason: str = Field(min_length=1, max_length=150)


class ApprovalOut(BaseModel):
    """`counts`: the approval is live and for the version the campaign pins now."""

    approver: str
    journey_version: str
    comment: str | None
    approved_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    counts: bool


class ReviewOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "campaign_id": "4c1d9e0b2a7f4e31",
                    "state": "submitted",
                    "journey_version": "9f2c4e1a7b3d5c60",
                    "submitted_by": "key_1a2b3c4d5e6f7a8b",
                    "audience_size": 152340,
                    "approvals_required": 2,
                    "approved_by": ["key_9f8e7d6c5b4a3f2e"],
                    "approvals": [
                        {
                            "approver": "key_9f8e7d6c5b4a3f2e",
                            "journey_version": "9f2c4e1a7b3d5c60",
                            "comment": None,
                            "approved_at": "2026-11-26T09:10:00Z",
                            "voided_at": None,
                            "void_reason": None,
                            "counts": True,
                        }
                    ],
                }
            ]
        }
    )

    campaign_id: str
    state: str
    journey_version: str
    submitted_by: str | None
    audience_size: int | None
    approvals_required: int
    approved_by: list[str]
    approvals: list[ApprovalOut]


@router.patch(
    "/{campaign_id}", responses=_REVIEW_PROBLEMS, summary="Change a campaign before launch"
)
async def change_campaign(
    campaign_id: CampaignId,
    body: CampaignChange,
    principal: Operator,
    campaigns: CampaignsDep,
    resources: ResourcesDep,
    audit: AuditDep,
) -> CampaignOut:
    """Re-pin the journey version or change settings before launch (409 after).

    A change voids the approvals and returns the campaign to draft; an unchanged value
    changes nothing.
    """
    campaign = await audited_campaign(audit, campaigns, principal, campaign_id)
    if body.version is not None:
        found = await resources.get(
            "Journey", campaign.business_line, campaign.journey, body.version
        )
        if found is None:
            raise ApiProblem(
                422,
                "unknown-journey",
                f"no version {body.version} of journey '{campaign.journey}' "
                f"in '{campaign.business_line}' is published",
            )
    changes = body.model_dump(include=set(TUNING), exclude_none=True)
    settings = {**campaign.settings, **changes} if changes else None
    with review_problems(campaign_id):
        revised, _ = await campaigns.revise(
            campaign_id, at=datetime.now(UTC), version=body.version, settings=settings
        )
    return audited_after(audit, revised)


@router.post(
    "/{campaign_id}/submit", responses=_REVIEW_PROBLEMS, summary="Submit a campaign for approval"
)
async def submit(
    campaign_id: CampaignId,
    principal: Operator,
    campaigns: CampaignsDep,
    resources: ResourcesDep,
    sessions: SessionsDep,
    state: StateDep,
    audit: AuditDep,
) -> CampaignOut:
    """Ask for approval: measures the audience, which sets how many approvals it needs."""
    campaign = await audited_campaign(audit, campaigns, principal, campaign_id)
    if campaign.state != "draft":
        raise conflict(f"a {campaign.state} campaign cannot be submitted; only a draft can")
    plan = await resources.journey_plan(
        campaign.business_line, campaign.journey, campaign.journey_version
    )
    if plan is None:
        raise conflict(f"journey version {campaign.journey_version} is no longer published")
    now = datetime.now(UTC)
    size = await audience_size(plan, campaigns, sessions, now)
    required = 2 if size > state.settings.approval_second_above else 1
    with review_problems(campaign_id):
        submitted = await campaigns.submit(
            campaign_id, by=principal.id, audience_size=size, approvals_required=required, at=now
        )
    return audited_after(audit, submitted)


@router.post("/{campaign_id}/approve", responses=_REVIEW_PROBLEMS, summary="Approve a campaign")
async def approve(
    campaign_id: CampaignId,
    principal: Approver,
    campaigns: CampaignsDep,
    audit: AuditDep,
    body: Annotated[Approval | None, Body()] = None,
) -> CampaignOut:
    """Approve the submitted campaign's pinned journey version (never one's own submission).

    The campaign becomes `approved` once it has as many approvals, by distinct approvers,
    as its audience needs; until then it stays `submitted`.
    """
    await audited_campaign(audit, campaigns, principal, campaign_id)
    body = body or Approval()
    with review_problems(campaign_id):
        approved = await campaigns.approve(
            campaign_id,
            by=principal.id,
            at=datetime.now(UTC),
            version=body.journey_version,
            comment=body.comment,
        )
    audit.detail["approval"] = {"journey_version": approved.journey_version}
    return audited_after(audit, approved)


@router.post("/{campaign_id}/reject", responses=_REVIEW_PROBLEMS, summary="Reject a campaign")
async def reject(
    campaign_id: CampaignId,
    body: Rejection,
    principal: Approver,
    campaigns: CampaignsDep,
    audit: AuditDep,
) -> CampaignOut:
    """Send a submitted or approved campaign back to draft; its approvals are void."""
    await audited_campaign(audit, campaigns, principal, campaign_id)
    with review_problems(campaign_id):
        rejected = await campaigns.reject(
            campaign_id, by=principal.id, reason=body.reason, at=datetime.now(UTC)
        )
    audit.detail["reason"] = body.reason
    return audited_after(audit, rejected)


@router.get(
    "/{campaign_id}/approvals",
    responses=problem_responses(401, 403, 404),
    summary="Get a campaign's approvals",
)
async def get_approvals(
    campaign_id: CampaignId, principal: Viewer, campaigns: CampaignsDep
) -> ReviewOut:
    """Every approval the campaign was given, void ones included, and who counts now."""
    campaign = await visible_campaign(campaigns, principal, campaign_id)
    with review_problems(campaign_id):
        review = await campaigns.review(campaign_id)
    counted = set(review.counted)
    return ReviewOut(
        campaign_id=campaign.id,
        state=campaign.state,
        journey_version=campaign.journey_version,
        submitted_by=campaign.submitted_by,
        audience_size=campaign.audience_size,
        approvals_required=review.required,
        approved_by=review.counted,
        approvals=[
            ApprovalOut(
                approver=a.approver,
                journey_version=a.journey_version,
                comment=a.comment,
                approved_at=a.approved_at,
                voided_at=a.voided_at,
                void_reason=a.void_reason,
                counts=a.approver in counted
                and a.voided_at is None
                and a.journey_version == campaign.journey_version,
            )
            for a in review.approvals
        ],
    )


async def audience_size(
    plan: Plan, campaigns: CampaignActivities, sessions: SessionFactory, at: datetime
) -> int:
    """How many customers the campaign may reach, as its approvers are told."""
    trigger = plan.trigger
    if trigger.kind == "audience" and trigger.segment is not None:
        counted = await SegmentActivities(sessions).count(
            CountSegmentInput(
                business_line=plan.journey.business_line,
                segment=trigger.segment,
                segments=plan.resources.segments_as_written(),
                at=at,
                timezone=plan.contact_policy.timezone,
            )
        )
        size = counted.count
    else:
        size = await campaigns.count_profiles()
    cap = plan.limits.max_entries
    return size if cap is None else min(size, cap)
