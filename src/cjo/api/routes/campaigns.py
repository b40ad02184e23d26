"""Campaigns (`/v1/campaigns`): create a draft, launch, pause, resume, stop, read, stats.

A launched campaign's state has one writer, its `CampaignWorkflow`: the API checks a move
against the life cycle (409 when it cannot be made), signals the workflow, and answers 202
once the workflow has recorded the new state, or after `SETTLE_TIMEOUT_SECONDS` with the
state as it then is (the move still happens, later). Waiting keeps "launch, then pause at
once" in order: the workflow's own first write (`running`) lands before any pause can.
The workflow id refuses a second start, so a campaign is launched once, ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from cjo.activities.campaigns import (
    CampaignActivities,
    CampaignState,
    CampaignStateError,
    SetCampaignStateInput,
    UnknownCampaignError,
)
from cjo.activities.stats import CampaignStatsInput, CampaignStatsResult
from cjo.api.deps import (
    CampaignsDep,
    OptionalTemporalDep,
    ResourcesDep,
    StatsDep,
    TaskQueueDep,
    TemporalDep,
)
from cjo.api.problems import ApiProblem, conflict, not_found, problem_responses
from cjo.runtime.log import get_logger
from cjo.store.schema import Campaign
from cjo.workflows.campaign import CampaignInput, CampaignWorkflow
from cjo.workflows.campaign import campaign_workflow_id as workflow_id

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
log = get_logger(__name__)
CampaignId = Annotated[str, Path(min_length=1, max_length=64)]
# A status query waits for a worker; the campaign's row answers even when none is free.
QUERY_TIMEOUT = timedelta(seconds=5)
# How long a move's answer waits for the workflow to record it, and how often it looks.
SETTLE_TIMEOUT_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.05
_DONE = {"pause": "paused", "resume": "resumed", "stop": "stopped"}
# The states each signal may be sent in (a draft is stopped without a workflow).
_SENT_FROM = {
    "pause": frozenset({"running"}),
    "resume": frozenset({"paused"}),
    "stop": frozenset({"running", "paused"}),
}


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey: str = Field(min_length=1, max_length=64)
    business_line: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, description="default: the newest version")
    rate_per_second: float | None = Field(default=None, gt=0, description="enrolment rate")
    page_size: int | None = Field(default=None, ge=1, le=10_000, description="enrolment page")


class CampaignLive(BaseModel):
    """What the campaign's workflow says of itself right now."""

    state: str
    fire: int
    enrolled: int


class CampaignOut(BaseModel):
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
    live: CampaignLive | None = None


@router.post("", status_code=201, responses=problem_responses(422))
async def create_campaign(
    body: CampaignCreate, campaigns: CampaignsDep, resources: ResourcesDep
) -> CampaignOut:
    """A draft, pinned to a published version of the journey."""
    journey = await resources.get("Journey", body.business_line, body.journey, body.version)
    if journey is None:
        which = f"version {body.version} of " if body.version else ""
        raise ApiProblem(
            422,
            "unknown-journey",
            f"no {which}journey '{body.journey}' in '{body.business_line}' is published",
        )
    settings = body.model_dump(include={"rate_per_second", "page_size"}, exclude_none=True)
    campaign = await campaigns.create(
        journey=body.journey,
        business_line=body.business_line,
        version=journey.version,
        settings=settings,
    )
    return _out(campaign)


@router.get("/{campaign_id}", responses=problem_responses(404))
async def get_campaign(
    campaign_id: CampaignId, campaigns: CampaignsDep, temporal: OptionalTemporalDep
) -> CampaignOut:
    """The campaign's row and, while it runs or is paused, its workflow's live status."""
    campaign = await _campaign(campaigns, campaign_id)
    live = None
    # Asking a finished workflow would replay its whole history for what the row says.
    if temporal is not None and campaign.state in ("running", "paused"):
        live = await _live(temporal, campaign_id)
    return _out(campaign, live)


@router.get("/{campaign_id}/stats", responses=problem_responses(404))
async def get_stats(campaign_id: CampaignId, stats: StatsDep) -> CampaignStatsResult:
    """Per step: runs that entered, runs waiting there now, outcomes; ends; conversions."""
    try:
        return await stats.campaign_stats(CampaignStatsInput(campaign_id=campaign_id))
    except UnknownCampaignError:
        raise not_found(f"no campaign {campaign_id}") from None


@router.post("/{campaign_id}/launch", status_code=202, responses=problem_responses(404, 409))
async def launch(
    campaign_id: CampaignId,
    campaigns: CampaignsDep,
    resources: ResourcesDep,
    temporal: TemporalDep,
    task_queue: TaskQueueDep,
) -> CampaignOut:
    """Start the campaign's workflow: enrolment begins at the journey's scheduled time."""
    campaign = await _campaign(campaigns, campaign_id)
    if campaign.state != "draft":
        raise conflict(f"a {campaign.state} campaign cannot be launched")
    plan = await resources.journey_plan(
        campaign.business_line, campaign.journey, campaign.journey_version
    )
    if plan is None:
        raise conflict(f"journey version {campaign.journey_version} is no longer published")
    tuning = {k: v for k, v in campaign.settings.items() if k in ("rate_per_second", "page_size")}
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
    return _out(await _settled(campaigns, campaign_id, lambda state: state != "draft"))


@router.post("/{campaign_id}/pause", status_code=202, responses=problem_responses(404, 409))
async def pause(
    campaign_id: CampaignId, campaigns: CampaignsDep, temporal: TemporalDep
) -> CampaignOut:
    """Stop enrolling, and hold runs before their next send or grant."""
    return await _control(campaigns, temporal, campaign_id, "paused", "pause")


@router.post("/{campaign_id}/resume", status_code=202, responses=problem_responses(404, 409))
async def resume(
    campaign_id: CampaignId, campaigns: CampaignsDep, temporal: TemporalDep
) -> CampaignOut:
    """Enrol again and release the held runs."""
    return await _control(campaigns, temporal, campaign_id, "running", "resume")


@router.post("/{campaign_id}/stop", status_code=202, responses=problem_responses(404, 409))
async def stop(
    campaign_id: CampaignId, campaigns: CampaignsDep, temporal: TemporalDep
) -> CampaignOut:
    """End the campaign and every run in it; a stopped campaign cannot start again."""
    campaign = await _campaign(campaigns, campaign_id)
    if campaign.state == "draft":
        await _move(campaigns, campaign_id, "stopped")  # never launched: no workflow to tell
        return _out(await _campaign(campaigns, campaign_id))
    return await _control(campaigns, temporal, campaign_id, "stopped", "stop")


async def _control(
    campaigns: CampaignActivities,
    temporal: Client,
    campaign_id: str,
    state: CampaignState,
    signal: str,
) -> CampaignOut:
    campaign = await _campaign(campaigns, campaign_id)
    if campaign.state not in _SENT_FROM[signal]:
        raise conflict(f"a {campaign.state} campaign cannot be {_DONE[signal]}")
    try:
        await temporal.get_workflow_handle(workflow_id(campaign_id)).signal(signal)
    except RPCError as error:
        log.warning("campaign workflow not signalled", campaign_id=campaign_id, error=str(error))
        raise conflict(f"the campaign's workflow is not running ({error.status.name})") from None
    return _out(await _settled(campaigns, campaign_id, lambda now: now == state))


async def _settled(
    campaigns: CampaignActivities, campaign_id: str, done: Callable[[str], bool]
) -> Campaign:
    """The campaign once `done(state)` holds, or as it is when the wait runs out."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_SECONDS
    while True:
        campaign = await _campaign(campaigns, campaign_id)
        if done(campaign.state) or asyncio.get_running_loop().time() >= deadline:
            return campaign
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def _move(campaigns: CampaignActivities, campaign_id: str, state: CampaignState) -> None:
    try:
        await campaigns.set_state(
            SetCampaignStateInput(campaign_id=campaign_id, state=state, at=datetime.now(UTC))
        )
    except CampaignStateError as error:
        raise conflict(error.message) from None
    except UnknownCampaignError:
        raise not_found(f"no campaign {campaign_id}") from None


async def _campaign(campaigns: CampaignActivities, campaign_id: str) -> Campaign:
    campaign = await campaigns.get(campaign_id)
    if campaign is None:
        raise not_found(f"no campaign {campaign_id}")
    return campaign


async def _live(temporal: Client, campaign_id: str) -> CampaignLive | None:
    try:
        status = await temporal.get_workflow_handle(workflow_id(campaign_id)).query(
            CampaignWorkflow.status, rpc_timeout=QUERY_TIMEOUT
        )
    except Exception as error:  # noqa: BLE001 - the row is the answer; live status is extra
        log.info("campaign status unavailable", campaign_id=campaign_id, error=str(error))
        return None
    return CampaignLive.model_validate(status.model_dump())


def _out(campaign: Campaign, live: CampaignLive | None = None) -> CampaignOut:
    return CampaignOut.model_validate({**campaign.model_dump(), "live": live})
