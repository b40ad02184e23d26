"""The campaign workflow: a journey put to work, its schedule, enrolment and life cycle.

- Event-triggered journeys: the campaign is `running` until stopped; the router enters
  users as their events arrive.
- Audience journeys: at the scheduled moment (now, `at`, or each `cron` fire) the segment
  is snapshotted into the database with one statement, and its members are entered page
  by page from activities at the configured rate, never as child workflows.
- Pause stops enrolment and holds in-flight users before their next send or grant;
  resume releases them; stop ends every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from cjo.activities.people.segments import SegmentActivities, SnapshotSegmentInput
    from cjo.activities.runs.campaigns import (
        CampaignActivities,
        CampaignState,
        CountRunsInput,
        SetCampaignStateInput,
    )
    from cjo.activities.runs.routing import (
        EnrolPageInput,
        RoutingActivities,
        SignalRunsInput,
    )
    from cjo.dsl import Plan
    from cjo.steps.rules import zone_of
    from cjo.workflows._cron import next_cron_fire

ACTIVITY_TIMEOUT = timedelta(minutes=5)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# How often a finished enrolment checks whether every run has ended: journeys run for
# days or weeks, and each check costs history, so hourly is plenty.
COMPLETION_CHECK = timedelta(hours=1)


class CampaignInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: str
    plan: Plan
    rate_per_second: float = Field(default=50.0, gt=0)
    page_size: int = Field(default=200, ge=1, le=10_000)
    # Carried across continue-as-new: which fire, which snapshot, how far enrolment got.
    fire: int = 0
    audience_id: str | None = None
    after_user_id: str = ""
    enrolled: int = 0


class CampaignStatus(BaseModel):
    state: str
    fire: int
    enrolled: int


@workflow.defn(name="Campaign")
class CampaignWorkflow:
    @workflow.init
    def __init__(self, data: CampaignInput) -> None:
        self._data = data
        self._state = "running"
        self._enrolled = data.enrolled
        # Control signals wait for the opening state write, or a pause sent right after
        # launch could be overwritten by it.
        self._opened = data.fire > 0 or data.audience_id is not None

    # Control ----------------------------------------------------------------------------

    @workflow.signal(name="pause")
    async def pause(self) -> None:
        await workflow.wait_condition(lambda: self._opened)
        if self._state == "running":
            self._state = "paused"
            await self._set_state("paused")

    @workflow.signal(name="resume")
    async def resume(self) -> None:
        await workflow.wait_condition(lambda: self._opened)
        if self._state == "paused":
            self._state = "running"
            await self._set_state("running")
            await workflow.execute_activity_method(
                RoutingActivities.signal_runs,
                SignalRunsInput(
                    campaign_id=self._data.campaign_id, signal="resume", statuses=["held"]
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )

    @workflow.signal(name="stop")
    async def stop(self) -> None:
        if self._state in ("running", "paused"):
            self._state = "stopping"

    @workflow.query(name="status")
    def status(self) -> CampaignStatus:
        return CampaignStatus(state=self._state, fire=self._data.fire, enrolled=self._enrolled)

    # Run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: CampaignInput) -> CampaignStatus:
        if not self._opened:
            await self._set_state("running")
            self._opened = True
        trigger = data.plan.trigger
        if trigger.kind == "event":
            await workflow.wait_condition(lambda: self._state == "stopping")
            return await self._stop()
        while True:
            if data.audience_id is None:
                start = self._next_start(data)
                if start is None:
                    break
                if not await self._sleep_until(start):
                    return await self._stop()
                data.fire += 1
                data.audience_id = f"{data.campaign_id}#{data.fire}"
                data.after_user_id = ""
                await self._snapshot(data)
            if not await self._enrol(data):
                return await self._stop()
            data.audience_id = None
            if trigger.schedule_cron is None:
                break
        return await self._complete()

    def _next_start(self, data: CampaignInput) -> datetime | None:
        trigger = data.plan.trigger
        now = workflow.now()
        if trigger.schedule_cron is not None:
            zone = zone_of(trigger.schedule_timezone, data.plan.contact_policy.timezone)
            return next_cron_fire(trigger.schedule_cron, zone, now)
        if data.fire > 0:
            return None  # a one-off audience has been entered
        if trigger.schedule_at is not None:
            return datetime.fromisoformat(trigger.schedule_at)
        return now

    async def _snapshot(self, data: CampaignInput) -> None:
        plan = data.plan
        assert plan.trigger.segment is not None and data.audience_id is not None
        await workflow.execute_activity_method(
            SegmentActivities.snapshot,
            SnapshotSegmentInput(
                business_line=plan.journey.business_line,
                segment=plan.trigger.segment,
                segments=plan.resources.segments_as_written(),
                at=workflow.now(),
                timezone=plan.contact_policy.timezone,
                snapshot_id=data.audience_id,
                segment_version=plan.resources.segments[plan.trigger.segment].version,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    async def _enrol(self, data: CampaignInput) -> bool:
        """Enter the snapshot page by page at the configured rate; False if stopped."""
        assert data.audience_id is not None
        pause_between = timedelta(seconds=data.page_size / data.rate_per_second)
        while True:
            await workflow.wait_condition(lambda: self._state != "paused")
            if self._state == "stopping":
                return False
            page = await workflow.execute_activity_method(
                RoutingActivities.enrol_page,
                EnrolPageInput(
                    campaign_id=data.campaign_id,
                    audience_id=data.audience_id,
                    after_user_id=data.after_user_id,
                    limit=data.page_size,
                    at=workflow.now(),
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            self._enrolled += page.enrolled
            data.enrolled = self._enrolled
            if page.last_user_id is None:
                return True
            data.after_user_id = page.last_user_id
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(data)
            if not await self._sleep(pause_between):
                return False

    async def _complete(self) -> CampaignStatus:
        """Every member entered: wait for their runs to end, then the campaign is complete."""
        while True:
            runs = await workflow.execute_activity_method(
                CampaignActivities.count_runs,
                CountRunsInput(campaign_id=self._data.campaign_id),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if runs.active == 0:
                break
            if not await self._sleep(COMPLETION_CHECK):
                return await self._stop()
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(self._data)
        self._state = "completed"
        await self._set_state("completed")
        return self.status()

    async def _stop(self) -> CampaignStatus:
        await self._set_state("stopped")
        await workflow.execute_activity_method(
            RoutingActivities.signal_runs,
            SignalRunsInput(campaign_id=self._data.campaign_id, signal="stop"),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self._state = "stopped"
        return self.status()

    async def _sleep(self, duration: timedelta) -> bool:
        """Sleep unless stopped; a pause keeps sleeping. False when stopped."""
        try:
            await workflow.wait_condition(lambda: self._state == "stopping", timeout=duration)
        except TimeoutError:
            return True
        return False

    async def _sleep_until(self, moment: datetime) -> bool:
        remaining = moment - workflow.now()
        if remaining > timedelta(0):
            return await self._sleep(remaining)
        return self._state != "stopping"

    async def _set_state(self, state: CampaignState) -> None:
        await workflow.execute_activity_method(
            CampaignActivities.set_state,
            SetCampaignStateInput(
                campaign_id=self._data.campaign_id, state=state, at=workflow.now()
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )


def campaign_workflow_id(campaign_id: str) -> str:
    return f"campaign/{campaign_id}"
