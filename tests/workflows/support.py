"""Helpers for journey tests: publish an example, add customers, start runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import (
    ConsentChange,
    ProfileActivities,
    ProfileContextInput,
    ProfileInput,
    SetConsentsInput,
    UpsertProfilesInput,
)
from cjo.activities.runs.campaigns import CampaignActivities
from cjo.activities.runs.models import JourneyInput, JourneyOutcome
from cjo.control.resources import ResourceActivities
from cjo.dsl import Plan
from cjo.steps.run import JourneyEvent, UserProfile
from cjo.store.db import SessionFactory
from cjo.workflows.campaign import (
    CampaignInput,
    CampaignStatus,
    CampaignWorkflow,
    campaign_workflow_id,
)
from cjo.workflows.journey import JourneyWorkflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def publish(sessions: SessionFactory, example: str) -> Plan:
    resources = ResourceActivities(sessions, default_registry())
    outcome = await resources.apply((EXAMPLES / example).read_text(encoding="utf-8"))
    assert outcome.valid, [d.format_text() for d in outcome.diagnostics]
    journey = next(a for a in outcome.applied if a.kind == "Journey")
    plan = await resources.journey_plan(journey.business_line, journey.name)
    assert plan is not None
    return plan


async def add_customer(
    sessions: SessionFactory,
    user_id: str,
    *,
    consents: dict[str, bool] | None = None,
    **fields: Any,
) -> None:
    profiles = ProfileActivities(sessions)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": user_id,
        "name": "李雷",
        "phone": "13800000001",
        "email": f"{user_id}@example.com",
        "timezone": "Asia/Shanghai",
        **fields,
    }
    await profiles.upsert_profiles(UpsertProfilesInput(profiles=[ProfileInput(**values)], at=at))
    given = {"sms": True, "push": True, "email": True, "inbox": True}
    given.update(consents or {})
    await profiles.set_consents(
        SetConsentsInput(
            requests=[ConsentChange(user_id=user_id, consents=given, source="test", at=at)]
        )
    )


async def morning(env: WorkflowEnvironment, at: str = "10:00", zone: str = "Asia/Shanghai") -> None:
    """Skip to the next `at` o'clock in `zone`, so quiet hours never depend on the wall clock."""
    now = await env.get_current_time()
    local = now.astimezone(ZoneInfo(zone))
    hours, minutes = (int(part) for part in at.split(":"))
    target = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    await env.sleep(target - local)


async def profile_of(sessions: SessionFactory, user_id: str) -> UserProfile:
    """The profile as the router reads it before it starts a run."""
    loaded = await ProfileActivities(sessions).profile_context(
        ProfileContextInput(user_ids=[user_id])
    )
    found = loaded.profiles[0]
    assert found is not None, f"no profile {user_id}"
    return found


def workflow_id(plan: Plan, user_id: str, key: str | None = None) -> str:
    base = f"journey/{plan.journey.business_line}/{plan.journey.name}/{user_id}"
    return f"{base}/{key}" if key else base


async def start(
    client: Client,
    task_queue: str,
    plan: Plan,
    user_id: str,
    trigger: str,
    props: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    campaign_id: str | None = None,
    profile: UserProfile | None = None,
) -> WorkflowHandle[JourneyWorkflow, JourneyOutcome]:
    """Start a run as the router does when `profile` is given (it read the profile to test
    the trigger's `where`), else as older starters did: the run loads it itself."""
    now = datetime.now(UTC)
    return await client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(
            plan=plan,
            user_id=user_id,
            trigger=JourneyEvent(name=trigger, props=props or {}, ts=now),
            profile=profile,
            entry_key=key,
            campaign_id=campaign_id,
        ),
        id=workflow_id(plan, user_id, key),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def signal_event(
    handle: WorkflowHandle[Any, Any], name: str, props: dict[str, Any] | None = None
) -> None:
    await handle.signal("event", JourneyEvent(name=name, props=props or {}, ts=datetime.now(UTC)))


async def launch(
    client: Client, task_queue: str, sessions: SessionFactory, plan: Plan, **options: Any
) -> tuple[str, WorkflowHandle[CampaignWorkflow, CampaignStatus]]:
    """Create a campaign for `plan` and start its workflow; returns its id and handle."""
    campaigns = CampaignActivities(sessions)
    campaign = await campaigns.create(
        journey=plan.journey.name, business_line=plan.journey.business_line
    )
    await approved(campaigns, campaign.id)
    handle = await client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(campaign_id=campaign.id, plan=plan, **options),
        id=campaign_workflow_id(campaign.id),
        task_queue=task_queue,
    )
    return campaign.id, handle


async def approved(campaigns: CampaignActivities, campaign_id: str) -> None:
    """Submit the draft and approve it as a second principal: the workflow may then run it."""
    now = datetime.now(UTC)
    await campaigns.submit(campaign_id, by="maker", audience_size=0, approvals_required=1, at=now)
    await campaigns.approve(campaign_id, by="checker", at=now)
