"""Campaigns: a journey version put to work, its review and its life cycle in the database.

States::

    draft → submitted → approved → running ⇄ paused → completed | stopped
      ▲         │           │
      └─────────┴───────────┘   (a change or a rejection sends it back; approvals void)

Maker-checker: an operator submits a draft; approvers other than the submitter approve it;
once it has as many approvals as its audience needs, by distinct approvers and for the
journey version it pins now, it is `approved` and may be launched. Every approval records
the exact journey version it approved, and any change to the campaign (another version,
other settings) voids the approvals and returns it to draft. A campaign always pins one
exact version, so publishing a newer journey version changes nothing for it.

Moves into the review states are made only by `submit`, `approve`, `reject` and `revise`,
which keep the records that go with them; `set_state` (the workflow's) refuses them, and
refuses `approved → running` unless the approvals are there.

Runs read the state before every send and grant, so a paused campaign sends and grants
nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import literal, text, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from cjo.activities._base import ActivityError, new_id, utc
from cjo.store.db import SessionFactory, reading
from cjo.store.schema import Campaign, CampaignApproval, Resource

CampaignState = Literal[
    "draft", "submitted", "approved", "running", "paused", "completed", "stopped"
]
# Which states a campaign may move to from each state.
MOVES: dict[str, frozenset[str]] = {
    "draft": frozenset({"submitted", "stopped"}),
    "submitted": frozenset({"approved", "draft", "stopped"}),
    "approved": frozenset({"running", "draft", "stopped"}),
    "running": frozenset({"paused", "completed", "stopped"}),
    # A paused campaign whose runs have all ended (none held) is complete.
    "paused": frozenset({"running", "completed", "stopped"}),
    "completed": frozenset(),
    "stopped": frozenset(),
}
# States only the review methods move into: they write the records that go with them.
REVIEW_STATES = frozenset({"draft", "submitted", "approved"})
# Before launch, a campaign's version and settings may still change (voiding approvals).
CHANGEABLE_STATES = REVIEW_STATES


class CampaignStateError(ActivityError):
    """A move the life cycle does not allow (e.g. resuming a stopped campaign)."""


class UnknownCampaignError(ActivityError):
    pass


class SelfApprovalError(ActivityError):
    """The submitter of a campaign tried to approve it."""


class DuplicateApprovalError(ActivityError):
    """An approver approved the same campaign twice: one approver counts once."""


class ApprovalRequiredError(ActivityError):
    """A launch without the approvals the campaign needs."""


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


class CampaignPosition(_Model):
    """Where a page of campaigns ended (listed newest first)."""

    created_at: datetime
    id: str


class CampaignPage(_Model):
    campaigns: list[Campaign]
    next: CampaignPosition | None = None


class Review(_Model):
    """A campaign's approvals: every one ever given, and who counts now."""

    approvals: list[CampaignApproval]
    counted: list[str] = Field(description="approvers whose approval counts now")
    required: int


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

    async def page(
        self,
        *,
        business_lines: frozenset[str] | None = None,
        business_line: str | None = None,
        journey: str | None = None,
        state: str | None = None,
        limit: int = 50,
        after: CampaignPosition | None = None,
    ) -> CampaignPage:
        """Campaigns newest first; `business_lines` (None: every line) bounds what is seen."""
        query = select(Campaign)
        if business_lines is not None:
            query = query.where(col(Campaign.business_line).in_(sorted(business_lines)))
        if business_line is not None:
            query = query.where(col(Campaign.business_line) == business_line)
        if journey is not None:
            query = query.where(col(Campaign.journey) == journey)
        if state is not None:
            query = query.where(col(Campaign.state) == state)
        if after is not None:
            query = query.where(
                tuple_(col(Campaign.created_at), col(Campaign.id))
                < tuple_(literal(utc(after.created_at)), literal(after.id))
            )
        query = query.order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        async with self._sessions() as session:
            # One more than asked tells whether another page follows.
            rows = list((await session.exec(query.limit(limit + 1))).all())
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if more else None
        position = None
        if last is not None and last.created_at is not None:
            position = CampaignPosition(created_at=last.created_at, id=last.id)
        return CampaignPage(campaigns=page, next=position)

    # Review -----------------------------------------------------------------------------

    async def revise(
        self,
        campaign_id: str,
        *,
        at: datetime,
        version: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> tuple[Campaign, bool]:
        """Re-pin the journey version and/or replace settings before launch; (campaign, changed).

        A change voids every approval and returns a submitted or approved campaign to draft.
        """
        async with self._sessions() as session, session.begin():
            campaign = await _locked(session, campaign_id)
            if campaign.state not in CHANGEABLE_STATES:
                raise CampaignStateError(f"a {campaign.state} campaign cannot be changed")
            reasons: list[str] = []
            if version is not None and version != campaign.journey_version:
                reasons.append(f"journey version {campaign.journey_version} → {version}")
                campaign.journey_version = version
            if settings is not None and settings != campaign.settings:
                reasons.append("settings changed")
                campaign.settings = dict(settings)
            if not reasons:
                return campaign, False
            await _void(session, campaign_id, "; ".join(reasons), at)
            _back_to_draft(campaign)
            campaign.updated_at = utc(at)
            session.add(campaign)
        return campaign, True

    async def submit(
        self,
        campaign_id: str,
        *,
        by: str,
        audience_size: int,
        approvals_required: int,
        at: datetime,
    ) -> Campaign:
        """Draft → submitted, with the audience the approvers are asked to accept."""
        async with self._sessions() as session, session.begin():
            campaign = await _locked(session, campaign_id)
            if campaign.state != "draft":
                raise CampaignStateError(
                    f"a {campaign.state} campaign cannot be submitted; only a draft can"
                )
            campaign.state = "submitted"
            campaign.submitted_by = by
            campaign.submitted_at = utc(at)
            campaign.audience_size = audience_size
            campaign.approvals_required = approvals_required
            campaign.updated_at = utc(at)
            session.add(campaign)
        return campaign

    async def approve(
        self,
        campaign_id: str,
        *,
        by: str,
        at: datetime,
        version: str | None = None,
        comment: str | None = None,
    ) -> Campaign:
        """Record `by`'s approval of the pinned version; approved once enough approvers agree.

        `version`, when given, is the journey version the approver reviewed: approving
        a campaign that has since been re-pinned elsewhere is refused.
        """
        async with self._sessions() as session, session.begin():
            campaign = await _locked(session, campaign_id)
            if campaign.state == "approved":
                raise CampaignStateError("the campaign is approved already")
            if campaign.state != "submitted":
                raise CampaignStateError(
                    f"a {campaign.state} campaign cannot be approved; it must be submitted first"
                )
            if by == campaign.submitted_by:
                raise SelfApprovalError(
                    "the submitter of a campaign cannot approve it; another approver must"
                )
            if version is not None and version != campaign.journey_version:
                raise CampaignStateError(
                    f"the campaign pins journey version {campaign.journey_version}, "
                    f"not {version}; review that version"
                )
            counted = await _counted(session, campaign)
            if by in counted:
                raise DuplicateApprovalError(
                    f"{by} has approved this campaign already; "
                    "a further approval must come from another approver"
                )
            session.add(
                CampaignApproval(
                    campaign_id=campaign_id,
                    journey_version=campaign.journey_version,
                    approver=by,
                    comment=comment,
                    approved_at=utc(at),
                )
            )
            if len(counted) + 1 >= campaign.approvals_required:
                campaign.state = "approved"
            campaign.updated_at = utc(at)
            session.add(campaign)
        return campaign

    async def reject(self, campaign_id: str, *, by: str, reason: str, at: datetime) -> Campaign:
        """Submitted or approved → draft: its approvals are void; it must be submitted again."""
        async with self._sessions() as session, session.begin():
            campaign = await _locked(session, campaign_id)
            if campaign.state not in ("submitted", "approved"):
                raise CampaignStateError(
                    f"a {campaign.state} campaign cannot be rejected; only a submitted "
                    "or approved one can"
                )
            await _void(session, campaign_id, f"rejected by {by}: {reason}", at)
            _back_to_draft(campaign)
            campaign.updated_at = utc(at)
            session.add(campaign)
        return campaign

    async def review(self, campaign_id: str) -> Review:
        async with self._sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise UnknownCampaignError(f"no campaign {campaign_id}")
            rows = await session.exec(
                select(CampaignApproval)
                .where(col(CampaignApproval.campaign_id) == campaign_id)
                .order_by(col(CampaignApproval.id))
            )
            approvals = list(rows.all())
        counted = [a.approver for a in approvals if _counts(a, campaign)]
        return Review(approvals=approvals, counted=counted, required=campaign.approvals_required)

    async def check_launch(self, campaign_id: str) -> Campaign:
        """The campaign, if it may be launched now; else why not (an ActivityError)."""
        async with self._sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise UnknownCampaignError(f"no campaign {campaign_id}")
            await _require_approvals(session, campaign)
        return campaign

    # The workflow's moves ---------------------------------------------------------------

    @activity.defn(name="campaigns.set_state")
    async def set_state(self, data: SetCampaignStateInput) -> SetCampaignStateResult:
        """Move the campaign; moving to the state it is in changes nothing (retries are safe)."""
        async with self._sessions() as session, session.begin():
            campaign = await _locked(session, data.campaign_id)
            if campaign.state == data.state:
                return SetCampaignStateResult(state=campaign.state, changed=False)
            if data.state in REVIEW_STATES:
                raise CampaignStateError(
                    f"a campaign becomes {data.state} through its review, not set_state"
                )
            if data.state not in MOVES[campaign.state]:
                raise CampaignStateError(f"a {campaign.state} campaign cannot become {data.state}")
            if data.state == "running" and campaign.launched_at is None:
                await _require_approvals(session, campaign)
                campaign.launched_at = utc(data.at)
            campaign.state = data.state
            campaign.updated_at = utc(data.at)
            if data.state in ("completed", "stopped"):
                campaign.ended_at = utc(data.at)
            session.add(campaign)
        return SetCampaignStateResult(state=data.state, changed=True)

    @activity.defn(name="campaigns.count_runs")
    async def count_runs(self, data: CountRunsInput) -> CountRunsResult:
        async with reading(self._sessions) as connection:
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

    async def count_profiles(self) -> int:
        """Every known customer: the most an event-triggered journey could enter."""
        async with reading(self._sessions) as connection:
            total = await connection.execute(text("SELECT count(*) FROM profiles"))
            return int(total.scalar_one())


async def _locked(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise UnknownCampaignError(f"no campaign {campaign_id}")
    return campaign


def _counts(approval: CampaignApproval, campaign: Campaign) -> bool:
    return approval.voided_at is None and approval.journey_version == campaign.journey_version


async def _counted(session: AsyncSession, campaign: Campaign) -> list[str]:
    """The distinct approvers whose approval counts for the campaign as it is now."""
    rows = await session.exec(
        select(CampaignApproval.approver)
        .where(
            col(CampaignApproval.campaign_id) == campaign.id,
            col(CampaignApproval.journey_version) == campaign.journey_version,
            col(CampaignApproval.voided_at).is_(None),
        )
        .distinct()
    )
    return sorted(rows.all())


async def _require_approvals(session: AsyncSession, campaign: Campaign) -> None:
    if campaign.state in ("draft", "submitted"):
        which = "submitted and approved" if campaign.state == "draft" else "approved"
        raise ApprovalRequiredError(
            f"the campaign is {campaign.state}: it must be {which} before it can be launched"
        )
    if campaign.state != "approved":
        raise CampaignStateError(f"a {campaign.state} campaign cannot be launched")
    counted = await _counted(session, campaign)
    if len(counted) < campaign.approvals_required:
        raise ApprovalRequiredError(
            f"the campaign has {len(counted)} of the {campaign.approvals_required} approvals "
            f"its journey version {campaign.journey_version} needs"
        )


async def _void(session: AsyncSession, campaign_id: str, reason: str, at: datetime) -> None:
    connection = await session.connection()
    await connection.execute(
        text(
            "UPDATE campaign_approvals SET voided_at = :at, void_reason = :reason"
            " WHERE campaign_id = :id AND voided_at IS NULL"
        ),
        {"at": utc(at), "reason": reason[:200], "id": campaign_id},
    )


def _back_to_draft(campaign: Campaign) -> None:
    campaign.state = "draft"
    campaign.submitted_by = None
    campaign.submitted_at = None
