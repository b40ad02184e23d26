"""Campaigns (`/v1/campaigns`): create a draft, launch, pause, resume, stop, read, stats.

The review (submit, approve, reject, change) is in `campaign_review`; lists and step
users in `campaign_reports`. Launching needs an approved campaign whose approvals are for
the journey version it pins (403 otherwise).

A launched campaign's state has one writer, its `CampaignWorkflow`: the API checks a move
against the life cycle (409 when it cannot be made), signals the workflow, and answers 202
once the workflow has recorded the new state, or after `SETTLE_TIMEOUT_SECONDS` with the
state as it then is (the move still happens, later). Waiting keeps "launch, then pause at
once" in order: the workflow's own first write (`running`) lands before any pause can.
The workflow id refuses a second start, so a campaign is launched once, ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from cjo.activities.runs.campaigns import (
    CampaignActivities,
    CampaignState,
    SetCampaignStateInput,
    UnknownCampaignError,
)
from cjo.api.audit import AuditDep
from cjo.api.auth import Operator, Viewer
from cjo.api.deps import (
    CampaignsDep,
    OptionalTemporalDep,
    ResourcesDep,
    StatsDep,
    TaskQueueDep,
    TemporalDep,
)
from cjo.api.problems import ApiProblem, conflict, not_found, problem_responses
from cjo.api.routes._campaigns import (
    TUNING,
    CampaignId,
    CampaignLive,
    CampaignOut,
    audited_after,
    audited_campaign,
    campaign_out,
    existing_campaign,
    review_problems,
    visible_campaign,
)
from cjo.control.stats import CampaignStatsInput, CampaignStatsResult
from cjo.runtime.log import get_logger
from cjo.store.schema import Campaign
from cjo.workflows.campaign import CampaignInput, CampaignWorkflow
from cjo.workflows.campaign import campaign_workflow_id as workflow_id

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
log = get_logger(__name__)
# A status query waits for a worker; the campaign's row answers even when none is free.
QUERY_TIMEOUT = timedelta(seconds=5)
# How long a move's answer waits for the workflow to record it, and how often it looks.
SETTLE_TIMEOUT_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.05
_DONE = {"pause": "paused", "resume": "resumed", "stop": "stopped"}
# The state each signal moves a campaign to, once its workflow has recorded it.
_REACHES: dict[str, CampaignState] = {"pause": "paused", "resume": "running", "stop": "stopped"}
# The states each signal may be sent in (a campaign never launched is stopped without one).
_SENT_FROM = {
    "pause": frozenset({"running"}),
    "resume": frozenset({"paused"}),
    "stop": frozenset({"running", "paused"}),
}
_NOT_LAUNCHED = frozenset({"draft", "submitted", "approved"})


STATS_EXAMPLE: dict[str, Any] = {
    "campaign_id": "4c1d9e0b2a7f4e31",
    "steps": {
        "message_test": {
            "entered": 900,
            "waiting": 0,
            "outcomes": {"rate_led": 452, "care_led": 448},
        },
        "await_login": {"entered": 900, "waiting": 120, "outcomes": {"event": 301, "timeout": 479}},
    },
    "ended": {"converted": 210, "completed": 570},
    "variants": {
        "care_led": {"entrants": 448, "conversions": 92, "rate": 0.2054},
        "rate_led": {"entrants": 452, "conversions": 118, "rate": 0.2611},
    },
    "holdout": {"entrants": 100, "conversions": 12, "rate": 0.12},
    "lift": {
        "care_led": {"value": 0.0854, "ci_low": -0.0002, "ci_high": 0.1493},
        "rate_led": {"value": 0.1411, "ci_low": 0.054, "ci_high": 0.2066},
    },
}


class CampaignCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"journey": "card-activation", "business_line": "credit-card"},
                {
                    "journey": "dormant-savers-reactivation",
                    "business_line": "retail",
                    "version": "9f2c4e1a7b3d5c60",
                    "rate_per_second": 50,
                },
            ]
        },
    )

    journey: str = Field(min_length=1, max_length=64)
    business_line: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, description="default: the newest version")
    rate_per_second: float | None = Field(default=None, gt=0, description="enrolment rate")
    page_size: int | None = Field(default=None, ge=1, le=10_000, description="enrolment page")


@router.post(
    "",
    status_code=201,
    summary="Create a draft campaign",
    responses=problem_responses(401, 403, 422),
)
async def create_campaign(
    body: CampaignCreate,
    principal: Operator,
    campaigns: CampaignsDep,
    resources: ResourcesDep,
    audit: AuditDep,
) -> CampaignOut:
    """A draft, pinned to a published version of the journey (the newest by default).

    It must be submitted and approved before it can be launched.
    """
    journey = None
    if principal.sees(body.business_line):
        journey = await resources.get("Journey", body.business_line, body.journey, body.version)
    if journey is None:
        # A line the caller does not see reads exactly as one without the journey.
        which = f"version {body.version} of " if body.version else ""
        raise ApiProblem(
            422,
            "unknown-journey",
            f"no {which}journey '{body.journey}' in '{body.business_line}' is published",
        )
    settings = body.model_dump(include=set(TUNING), exclude_none=True)
    campaign = await campaigns.create(
        journey=body.journey,
        business_line=body.business_line,
        version=journey.version,
        created_by=principal.id,
        settings=settings,
    )
    out = campaign_out(campaign)
    audit.target("campaign", campaign.id, campaign.business_line)
    audit.after(out)
    return out


@router.get("/{campaign_id}", summary="Get a campaign", responses=problem_responses(401, 403, 404))
async def get_campaign(
    campaign_id: CampaignId,
    principal: Viewer,
    campaigns: CampaignsDep,
    temporal: OptionalTemporalDep,
) -> CampaignOut:
    """The campaign's row and, while it runs or is paused, its workflow's live status."""
    campaign = await visible_campaign(campaigns, principal, campaign_id)
    live = None
    # Asking a finished workflow would replay its whole history for what the row says.
    if temporal is not None and campaign.state in ("running", "paused"):
        live = await _live(temporal, campaign_id)
    return campaign_out(campaign, live)


@router.get(
    "/{campaign_id}/stats",
    summary="Get a campaign's statistics and A/B lift",
    responses={
        200: {"content": {"application/json": {"example": STATS_EXAMPLE}}},
        **problem_responses(401, 403, 404),
    },
)
async def get_stats(
    campaign_id: CampaignId, principal: Viewer, campaigns: CampaignsDep, stats: StatsDep
) -> CampaignStatsResult:
    """Per step: runs that entered, runs waiting there now, outcomes; ends; conversions
    per variant and holdout; each variant's lift over the holdout.

    `lift.<variant>.value` is the variant's conversion rate minus the holdout's (absolute:
    0.03 is three percentage points); `ci_low`/`ci_high` bound it at 95% confidence by
    Newcombe's hybrid score method (from Wilson score intervals), which holds up at zero
    conversions and in small groups. A variant has no lift while it or the holdout has no
    entrants.
    """
    await visible_campaign(campaigns, principal, campaign_id)
    try:
        return await stats.campaign_stats(CampaignStatsInput(campaign_id=campaign_id))
    except UnknownCampaignError:
        raise not_found(f"no campaign {campaign_id}") from None


@router.post(
    "/{campaign_id}/launch",
    status_code=202,
    summary="Launch an approved campaign",
    responses=problem_responses(401, 403, 404, 409),
)
async def launch(
    campaign_id: CampaignId,
    principal: Operator,
    campaigns: CampaignsDep,
    resources: ResourcesDep,
    temporal: TemporalDep,
    task_queue: TaskQueueDep,
    audit: AuditDep,
) -> CampaignOut:
    """Start an approved campaign's workflow: enrolment begins at the journey's scheduled
    time. 403 when it lacks its approvals (a draft, a submitted one, approvals voided)."""
    campaign = await audited_campaign(audit, campaigns, principal, campaign_id)
    with review_problems(campaign_id):
        await campaigns.check_launch(campaign_id)
    plan = await resources.journey_plan(
        campaign.business_line, campaign.journey, campaign.journey_version
    )
    if plan is None:
        raise conflict(f"journey version {campaign.journey_version} is no longer published")
    tuning = {k: v for k, v in campaign.settings.items() if k in TUNING}
    try:
        await temporal.start_workflow(
            CampaignWorkflow.run,
            CampaignInput(campaign_id=campaign_id, plan=plan, **tuning),
            id=workflow_id(campaign_id),
            task_queue=task_queue,
            # One workflow per campaign, ever: a stopped campaign is not launched again.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise conflict("the campaign has been launched already") from None
    # Events sent after this answer are routed only once the campaign shows `running`.
    settled = await _settled(campaigns, campaign_id, lambda state: state != "approved")
    return audited_after(audit, settled)


Signal = Literal["pause", "resume", "stop"]
Move = Callable[[Signal], Awaitable[CampaignOut]]
_MOVE_PROBLEMS = problem_responses(401, 403, 404, 409)


def _move_of(
    campaign_id: CampaignId,
    principal: Operator,
    campaigns: CampaignsDep,
    temporal: TemporalDep,
    audit: AuditDep,
) -> Move:
    """Pausing, resuming or stopping the campaign in the path: found as the caller may see
    it, and named in the audit row with its state before and after the move."""

    async def move(signal: Signal) -> CampaignOut:
        campaign = await audited_campaign(audit, campaigns, principal, campaign_id)
        if signal == "stop" and campaign.state in _NOT_LAUNCHED:
            # Never launched: there is no workflow to tell.
            await _set_state(campaigns, campaign_id, "stopped")
            return audited_after(audit, await existing_campaign(campaigns, campaign_id))
        return audited_after(audit, await _control(campaigns, temporal, campaign_id, signal))

    return move


MoveDep = Annotated[Move, Depends(_move_of)]


@router.post(
    "/{campaign_id}/pause", status_code=202, summary="Pause a campaign", responses=_MOVE_PROBLEMS
)
async def pause(move: MoveDep) -> CampaignOut:
    """Stop enrolling, and hold runs before their next send or grant."""
    return await move("pause")


@router.post(
    "/{campaign_id}/resume", status_code=202, summary="Resume a campaign", responses=_MOVE_PROBLEMS
)
async def resume(move: MoveDep) -> CampaignOut:
    """Enrol again and release the held runs."""
    return await move("resume")


@router.post(
    "/{campaign_id}/stop", status_code=202, summary="Stop a campaign", responses=_MOVE_PROBLEMS
)
async def stop(move: MoveDep) -> CampaignOut:
    """End the campaign and every run in it; a stopped campaign cannot start again.

    A campaign not launched yet (draft, submitted, approved) is simply withdrawn.
    """
    return await move("stop")


async def _control(
    campaigns: CampaignActivities, temporal: Client, campaign_id: str, signal: Signal
) -> Campaign:
    campaign = await existing_campaign(campaigns, campaign_id)
    if campaign.state not in _SENT_FROM[signal]:
        raise conflict(f"a {campaign.state} campaign cannot be {_DONE[signal]}")
    try:
        await temporal.get_workflow_handle(workflow_id(campaign_id)).signal(signal)
    except RPCError as error:
        log.warning("campaign workflow not signalled", campaign_id=campaign_id, error=str(error))
        raise conflict(f"the campaign's workflow is not running ({error.status.name})") from None
    return await _settled(campaigns, campaign_id, lambda now: now == _REACHES[signal])


async def _settled(
    campaigns: CampaignActivities, campaign_id: str, done: Callable[[str], bool]
) -> Campaign:
    """The campaign once `done(state)` holds, or as it is when the wait runs out."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_SECONDS
    while True:
        campaign = await existing_campaign(campaigns, campaign_id)
        if done(campaign.state) or asyncio.get_running_loop().time() >= deadline:
            return campaign
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def _set_state(campaigns: CampaignActivities, campaign_id: str, state: CampaignState) -> None:
    with review_problems(campaign_id):
        await campaigns.set_state(
            SetCampaignStateInput(campaign_id=campaign_id, state=state, at=datetime.now(UTC))
        )


async def _live(temporal: Client, campaign_id: str) -> CampaignLive | None:
    try:
        status = await temporal.get_workflow_handle(workflow_id(campaign_id)).query(
            CampaignWorkflow.status, rpc_timeout=QUERY_TIMEOUT
        )
    except Exception as error:  # noqa: BLE001 - the row is the answer; live status is extra
        log.info("campaign status unavailable", campaign_id=campaign_id, error=str(error))
        return None
    return CampaignLive.model_validate(status.model_dump())
