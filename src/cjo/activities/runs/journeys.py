"""The records of journey runs: enrolments (who is where, how it ended) and the step log.

The interpreter calls these as local activities: they are bookkeeping, cheap and
idempotent, and keeping them off the task queue leaves Temporal's capacity for the steps
that matter (sends, grants). Every write is keyed: a replayed call changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from temporalio import activity

from cjo.activities.people.profiles import CONTEXT_SELECT
from cjo.activities.runs.records import RunWrite, write_runs
from cjo.steps.run import EndReason, RunEntry, RunRecords, StepRecord, UserProfile, utc
from cjo.store.db import SessionFactory, transaction
from cjo.store.schema import Campaign

__all__ = [
    "CampaignStateInput",
    "CampaignStateResult",
    "EnterJourneyInput",
    "EnterJourneyResult",
    "FinishJourneyInput",
    "JourneyActivities",
    "RecordStepsInput",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnterJourneyInput(_Model):
    run_key: str
    workflow_id: str
    campaign_id: str | None = None
    business_line: str
    journey: str
    plan_version: str
    user_id: str
    entry_key: str | None = None
    holdout: bool = False
    at: datetime


class EnterJourneyResult(_Model):
    profile: UserProfile | None
    campaign_state: str | None = None


class RecordStepsInput(_Model):
    run_key: str
    user_id: str
    entry: RunEntry | None = None
    records: list[StepRecord] = Field(default_factory=list)
    current_step: str | None = None
    variant: str | None = None
    converted_at: datetime | None = None
    status: Literal["active", "held"] = "active"


class FinishJourneyInput(_Model):
    run_key: str
    user_id: str
    entry: RunEntry | None = None
    records: list[StepRecord] = Field(default_factory=list)
    end_reason: EndReason
    variant: str | None = None
    converted_at: datetime | None = None
    at: datetime


class CampaignStateInput(_Model):
    campaign_id: str


class CampaignStateResult(_Model):
    state: str | None


# The entry (once per run), the campaign's state and the profile: one round trip.
_ENTER = text(
    "WITH entered AS ("
    " INSERT INTO enrolments (run_key, workflow_id, campaign_id, business_line, journey,"
    " plan_version, user_id, entry_key, holdout, status, entered_at)"
    " VALUES (:run_key, :workflow_id, :campaign_id, :business_line, :journey, :plan_version,"
    " :user_id, :entry_key, :holdout, 'active', :entered_at)"
    " ON CONFLICT (run_key) DO NOTHING)"
    " SELECT (SELECT state FROM campaigns WHERE id = :campaign_id) AS campaign_state,"
    f" (SELECT row_to_json(x) FROM ({CONTEXT_SELECT}) AS x) AS profile"
)


class JourneyActivities:
    """Enrolments and the step log, on the database."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="journeys.enter")
    async def enter(self, data: EnterJourneyInput) -> EnterJourneyResult:
        """Record the entry (once per run) and load what the run needs to start."""
        async with transaction(self._sessions) as connection:
            row = (
                await connection.execute(
                    _ENTER,
                    {
                        "run_key": data.run_key,
                        "workflow_id": data.workflow_id,
                        "campaign_id": data.campaign_id,
                        "business_line": data.business_line,
                        "journey": data.journey,
                        "plan_version": data.plan_version,
                        "user_id": data.user_id,
                        "entry_key": data.entry_key,
                        "holdout": data.holdout,
                        "entered_at": utc(data.at),
                        "ids": [data.user_id],
                    },
                )
            ).one()
        state = None
        if data.campaign_id is not None:
            # A campaign that is gone is treated as running: its runs were started for it.
            state = row.campaign_state if row.campaign_state in ("paused", "stopped") else "running"
        profile = UserProfile.model_validate(row.profile) if row.profile is not None else None
        return EnterJourneyResult(profile=profile, campaign_state=state)

    @activity.defn(name="journeys.record")
    async def record(self, data: RecordStepsInput) -> None:
        """Write step records and where the user is now."""
        run = RunRecords(
            run_key=data.run_key,
            variant=data.variant,
            converted_at=data.converted_at,
            entry=data.entry,
        )
        write = RunWrite(data.user_id, run, data.records, data.current_step, status=data.status)
        async with transaction(self._sessions) as connection:
            await write_runs(connection, [write])

    @activity.defn(name="journeys.finish")
    async def finish(self, data: FinishJourneyInput) -> None:
        """Write the last records and close the enrolment with its end reason."""
        run = RunRecords(
            run_key=data.run_key,
            variant=data.variant,
            converted_at=data.converted_at,
            entry=data.entry,
        )
        write = RunWrite(
            data.user_id, run, data.records, None, at=data.at, end_reason=data.end_reason
        )
        async with transaction(self._sessions) as connection:
            await write_runs(connection, [write])

    @activity.defn(name="journeys.campaign_state")
    async def campaign_state(self, data: CampaignStateInput) -> CampaignStateResult:
        async with self._sessions() as session:
            campaign = await session.get(Campaign, data.campaign_id)
            return CampaignStateResult(state=campaign.state if campaign is not None else None)
