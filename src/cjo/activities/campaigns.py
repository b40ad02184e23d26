"""Campaigns: a journey version put to work, and its life cycle in the database.

States: draft → running ⇄ paused → completed | stopped (the approval states of the
governed API come later). Runs read the state before every send and grant, so a paused
campaign sends and grants nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from temporalio import activity

from cjo.activities._base import ActivityError, new_id, utc
from cjo.store.db import SessionFactory
from cjo.store.schema import Campaign, Resource

CampaignState = Literal["draft", "running", "paused", "completed", "stopped"]
# Which states a campaign may move to from each state.
MOVES: dict[str, frozenset[str]] = {
    "draft": frozenset({"running", "stopped"}),
    "running": frozenset({"paused", "completed", "stopped"}),
    # A paused campaign whose runs have all ended (none held) is complete.
    "paused": frozenset({"running", "completed", "stopped"}),
    "completed": frozenset(),
    "stopped": frozenset(),
}


class CampaignStateError(ActivityError):
    """A move the life cycle does not allow (e.g. resuming a stopped campaign)."""


class UnknownCampaignError(ActivityError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SetCampaignStateInput(_Model):
    campaign_id: str
    state: CampaignState
    at: datetime


class SetCampaignStateResult(_Model):
    state: str
    changed: bool


class CountRunsInput(_Model):
    campaign_id: str


class CountRunsResult(_Model):
    active: int
    ended: int


class CampaignActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create(
        self,
        *,
        journey: str,
        business_line: str,
        version: str | None = None,
        created_by: str | None = None,
        settings: dict[str, object] | None = None,
    ) -> Campaign:
        """A draft campaign pinned to a journey version (default: the newest)."""
        async with self._sessions() as session, session.begin():
            head = await session.get(Resource, ("Journey", business_line, journey))
            if head is None:
                raise UnknownCampaignError(f"no journey '{journey}' in '{business_line}'")
            campaign = Campaign(
                id=new_id()[:16],
                business_line=business_line,
                journey=journey,
                journey_version=version or head.latest_version,
                state="draft",
                created_by=created_by,
                settings=dict(settings or {}),
            )
            session.add(campaign)
        return campaign

    async def get(self, campaign_id: str) -> Campaign | None:
        async with self._sessions() as session:
            return await session.get(Campaign, campaign_id)

    @activity.defn(name="campaigns.set_state")
    async def set_state(self, data: SetCampaignStateInput) -> SetCampaignStateResult:
        """Move the campaign; moving to the state it is in changes nothing (retries are safe)."""
        async with self._sessions() as session, session.begin():
            campaign = await session.get(Campaign, data.campaign_id, with_for_update=True)
            if campaign is None:
                raise UnknownCampaignError(f"no campaign {data.campaign_id}")
            if campaign.state == data.state:
                return SetCampaignStateResult(state=campaign.state, changed=False)
            if data.state not in MOVES[campaign.state]:
                raise CampaignStateError(f"a {campaign.state} campaign cannot become {data.state}")
            campaign.state = data.state
            campaign.updated_at = utc(data.at)
            if data.state == "running" and campaign.launched_at is None:
                campaign.launched_at = utc(data.at)
            if data.state in ("completed", "stopped"):
                campaign.ended_at = utc(data.at)
            session.add(campaign)
        return SetCampaignStateResult(state=data.state, changed=True)

    @activity.defn(name="campaigns.count_runs")
    async def count_runs(self, data: CountRunsInput) -> CountRunsResult:
        async with self._sessions() as session:
            connection = await session.connection()
            row = (
                await connection.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE status <> 'ended'),"
                        " count(*) FILTER (WHERE status = 'ended')"
                        " FROM enrolments WHERE campaign_id = :id"
                    ),
                    {"id": data.campaign_id},
                )
            ).one()
        return CountRunsResult(active=int(row[0]), ended=int(row[1]))
