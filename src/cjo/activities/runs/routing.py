"""Entering users into journeys and routing their events to the runs that wait for them.

An event may start a run (the trigger of a running event-triggered campaign) and may
matter to runs already going (a `wait_for`, a goal, an exit). Starting is
signal-with-start on the run's workflow id, so a duplicate trigger never makes a second
run; re-entry rules decide whether an ended run may start again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from cjo.activities._base import utc
from cjo.activities.people.profiles import (
    EventInput,
    IngestEventsInput,
    ProfileActivities,
    ProfileContextInput,
)
from cjo.activities.runs.models import JourneyInput, RoutedEvent
from cjo.dsl import Plan, evaluate_expression
from cjo.dsl.plan import WaitForPlanStep
from cjo.runtime.log import get_logger
from cjo.steps.run import UserProfile
from cjo.steps.semantics import entry_context
from cjo.store.db import SessionFactory, reading

log = get_logger(__name__)
JOURNEY_WORKFLOW = "Journey"
# Users whose events are routed at once (each user's own events stay in order).
ROUTING_LANES = 32
PLAN_CACHE_SIZE = 256


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RouteEventsInput(_Model):
    events: list[RoutedEvent]


class RouteEventsResult(_Model):
    started: int = 0
    signalled: int = 0
    refused: dict[str, int] = Field(default_factory=dict)


class EnrolPageInput(_Model):
    campaign_id: str
    audience_id: str
    after_user_id: str = ""
    limit: int = Field(default=500, ge=1, le=10_000)
    at: datetime


class EnrolPageResult(_Model):
    enrolled: int
    refused: int
    last_user_id: str | None


class SignalRunsInput(_Model):
    campaign_id: str
    signal: str
    statuses: list[str] = Field(default_factory=lambda: ["active", "held"])


class SignalRunsResult(_Model):
    signalled: int


def stored_events(events: Sequence[EventInput], accepted_ids: Sequence[str]) -> list[RoutedEvent]:
    """The events that were stored (`profiles.ingest_events` accepted), in order and each
    once: a duplicate is never routed twice."""
    pending = set(accepted_ids)
    routed: list[RoutedEvent] = []
    for event in events:
        if event.id in pending:
            pending.discard(event.id)
            # Validated once already, as an EventInput.
            routed.append(
                RoutedEvent.model_construct(
                    id=event.id,
                    user_id=event.user_id,
                    name=event.name,
                    props=event.props,
                    ts=event.ts,
                )
            )
    return routed


async def store_and_route(
    profiles: ProfileActivities, routing: RoutingActivities | None, events: Sequence[EventInput]
) -> int:
    """Store events once per id, then route the ones stored (when there is a Temporal to
    route them through); how many were stored."""
    if not events:
        return 0
    stored = await profiles.ingest_events(IngestEventsInput(events=list(events)))
    routed = stored_events(events, stored.accepted_ids)
    if routed and routing is not None:
        await routing.route_events(RouteEventsInput(events=routed))
    return len(routed)


def workflow_id_for(plan: Plan, user_id: str, key: str | None) -> str:
    base = f"journey/{plan.journey.business_line}/{plan.journey.name}/{user_id}"
    return f"{base}/{key}" if key else base


def listens_for(plan: Plan) -> set[str]:
    """Event names a running run of this plan reacts to."""
    names = {rule.event for rule in plan.exits}
    if plan.goal is not None:
        names.add(plan.goal.event)
    names.update(
        step.params.event for step in plan.steps.values() if isinstance(step, WaitForPlanStep)
    )
    return names


@dataclass
class _Campaign:
    id: str
    plan: Plan
    entries: int


@dataclass
class _Decision:
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1


class RoutingActivities:
    """Signal-with-start into journeys, and signals to runs already going."""

    def __init__(self, sessions: SessionFactory, client: Client, task_queue: str) -> None:
        self._sessions = sessions
        self._client = client
        self._task_queue = task_queue
        self._profiles = ProfileActivities(sessions)
        self._plans: dict[tuple[str, str, str], Plan] = {}

    @activity.defn(name="routing.route_events")
    async def route_events(self, data: RouteEventsInput) -> RouteEventsResult:
        """Start the journeys these events trigger and tell waiting runs about them.

        Each user's events are handled in order, in a lane of their own; the lanes run side
        by side (ROUTING_LANES at once), since a start or a signal is a round trip to
        Temporal and users do not depend on each other.
        """
        campaigns = await self._running_event_campaigns({event.name for event in data.events})
        by_user: dict[str, list[RoutedEvent]] = defaultdict(list)
        for event in data.events:
            by_user[event.user_id].append(event)
        # Profiles only for users whose events may start a run (the trigger's `where`).
        entering = sorted({e.user_id for e in data.events if campaigns.get(e.name)})
        profiles = await self._profile_map(entering)
        runs_by_user: dict[str, list[tuple[str, Plan]]] = defaultdict(list)
        for workflow_id, plan in await self._running_runs(sorted(by_user)):
            runs_by_user[workflow_id.split("/")[3]].append((workflow_id, plan))
        decision = _Decision()
        lanes = asyncio.Semaphore(ROUTING_LANES)

        async def lane(user_id: str, events: list[RoutedEvent]) -> tuple[int, int]:
            started = signalled = 0
            async with lanes:
                touched: set[str] = set()
                for event in events:
                    for campaign in campaigns.get(event.name, []):
                        workflow_id = await self._enter(campaign, event, profiles, decision)
                        if workflow_id is not None:
                            touched.add(workflow_id)
                            started += 1
                for workflow_id, plan in runs_by_user.get(user_id, []):
                    # A run just (re)entered got its trigger with signal-with-start.
                    if workflow_id in touched:
                        continue
                    for event in events:
                        if event.name in listens_for(plan):
                            handle = self._client.get_workflow_handle(workflow_id)
                            await handle.signal("event", event.as_journey_event())
                            signalled += 1
            return started, signalled

        # Most events concern no journey at all: only users with a trigger or a run get a lane.
        busy = [
            (user, events)
            for user, events in by_user.items()
            if user in runs_by_user or any(campaigns.get(e.name) for e in events)
        ]
        counts = await asyncio.gather(*(lane(user, events) for user, events in busy))
        return RouteEventsResult(
            started=sum(started for started, _ in counts),
            signalled=sum(signalled for _, signalled in counts),
            refused=decision.refused,
        )

    @activity.defn(name="routing.enrol_page")
    async def enrol_page(self, data: EnrolPageInput) -> EnrolPageResult:
        """Enter one page of an audience snapshot into the campaign's journey."""
        campaign = await self._campaign(data.campaign_id)
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text(
                    "SELECT user_id FROM audience_members WHERE audience_id = :audience"
                    " AND user_id > :after ORDER BY user_id LIMIT :limit"
                ),
                {"audience": data.audience_id, "after": data.after_user_id, "limit": data.limit},
            )
            members = [str(row[0]) for row in rows]
        profiles = await self._profile_map(members)
        decision = _Decision()
        enrolled = 0
        for user_id in members:
            event = RoutedEvent(
                id=f"audience/{data.audience_id}/{user_id}",
                user_id=user_id,
                name="audience",
                props={},
                ts=data.at,
            )
            if await self._enter(campaign, event, profiles, decision) is not None:
                enrolled += 1
        return EnrolPageResult(
            enrolled=enrolled,
            refused=sum(decision.refused.values()),
            last_user_id=members[-1] if members else None,
        )

    @activity.defn(name="routing.signal_runs")
    async def signal_runs(self, data: SignalRunsInput) -> SignalRunsResult:
        """Send `signal` to every run of a campaign in the given statuses (pause, stop)."""
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text(
                    "SELECT DISTINCT workflow_id FROM enrolments"
                    " WHERE campaign_id = :campaign AND status = ANY(:statuses)"
                ),
                {"campaign": data.campaign_id, "statuses": data.statuses},
            )
            workflow_ids = [str(row[0]) for row in rows]
        payload: dict[str, Any] = {"reason": "stopped"} if data.signal == "stop" else {}
        for workflow_id in workflow_ids:
            handle = self._client.get_workflow_handle(workflow_id)
            if payload:
                await handle.signal(data.signal, payload)
            else:
                await handle.signal(data.signal)
        return SignalRunsResult(signalled=len(workflow_ids))

    # Entering ---------------------------------------------------------------------------

    async def _enter(
        self,
        campaign: _Campaign,
        event: RoutedEvent,
        profiles: dict[str, UserProfile],
        decision: _Decision,
    ) -> str | None:
        plan = campaign.plan
        profile = profiles.get(event.user_id)
        if profile is None:
            decision.refuse("unknown_user")
            return None
        context = entry_context(plan, profile, event.as_journey_event())
        if plan.trigger.where and not _holds(plan.trigger.where, context):
            decision.refuse("where")
            return None
        key: str | None = None
        if plan.entry.key:
            try:
                key = str(evaluate_expression(plan.entry.key, context))
            except Exception:  # noqa: BLE001 - a missing key is a data problem, not ours
                decision.refuse("no_key")
                return None
        workflow_id = workflow_id_for(plan, event.user_id, key)
        refusal = await self._entry_refusal(campaign, workflow_id, event.ts)
        if refusal is not None:
            decision.refuse(refusal)
            return None
        await self._client.start_workflow(
            JOURNEY_WORKFLOW,
            JourneyInput(
                plan=plan,
                user_id=event.user_id,
                trigger=event.as_journey_event(),
                profile=profile,
                entry_key=key,
                campaign_id=campaign.id,
            ),
            id=workflow_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="event",
            start_signal_args=[event.as_journey_event()],
        )
        return workflow_id

    async def _entry_refusal(
        self, campaign: _Campaign, workflow_id: str, at: datetime
    ) -> str | None:
        plan = campaign.plan
        async with reading(self._sessions) as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT bool_or(status <> 'ended'), max(ended_at), count(*)"
                        " FROM enrolments WHERE workflow_id = :id"
                    ),
                    {"id": workflow_id},
                )
            ).one()
            running, last_ended, entries = bool(row[0]), row[1], int(row[2])
            if running:
                return None  # signal-with-start reaches the run already going
            if entries and plan.entry.reentry == "never":
                return "reentry"
            if entries and plan.entry.reentry == "after" and last_ended is not None:
                wait = timedelta(seconds=plan.entry.reentry_after_seconds or 0)
                if utc(at) < last_ended + wait:
                    return "reentry"
            if plan.limits.max_entries is not None:
                total = await connection.execute(
                    text("SELECT count(*) FROM enrolments WHERE campaign_id = :campaign"),
                    {"campaign": campaign.id},
                )
                if int(total.scalar_one()) >= plan.limits.max_entries:
                    return "max_entries"
        return None

    # Reading ----------------------------------------------------------------------------

    async def _profile_map(self, users: Sequence[str]) -> dict[str, UserProfile]:
        if not users:
            return {}
        loaded = await self._profiles.profile_context(ProfileContextInput(user_ids=list(users)))
        return {profile.id: profile for profile in loaded.profiles if profile is not None}

    async def _campaign(self, campaign_id: str) -> _Campaign:
        found = await self._campaigns("c.id = :id", {"id": campaign_id})
        if not found:
            raise LookupError(f"campaign {campaign_id} has no published journey")
        return found[0]

    async def _running_event_campaigns(self, names: Iterable[str]) -> dict[str, list[_Campaign]]:
        by_event: dict[str, list[_Campaign]] = {}
        for campaign in await self._campaigns("c.state = 'running'", {}):
            trigger = campaign.plan.trigger
            if trigger.kind == "event" and trigger.event in set(names):
                by_event.setdefault(str(trigger.event), []).append(campaign)
        return by_event

    async def _campaigns(self, where: str, params: dict[str, Any]) -> list[_Campaign]:
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text(
                    "SELECT c.id, v.plan FROM campaigns c JOIN resource_versions v"
                    " ON v.kind = 'Journey' AND v.business_line = c.business_line"
                    " AND v.name = c.journey AND v.version = c.journey_version"
                    f" WHERE {where}"
                ),
                params,
            )
            return [_Campaign(str(row[0]), Plan.model_validate(row[1]), 0) for row in rows]

    async def _running_runs(self, users: Sequence[str]) -> list[tuple[str, Plan]]:
        if not users:
            return []
        async with reading(self._sessions) as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT workflow_id, business_line, journey, plan_version"
                        " FROM enrolments WHERE user_id = ANY(:users)"
                        " AND status IN ('active', 'held')"
                    ),
                    {"users": list(users)},
                )
            ).all()
            versions = {(str(r[1]), str(r[2]), str(r[3])) for r in rows}
            if len(self._plans | dict.fromkeys(versions)) > PLAN_CACHE_SIZE:
                self._plans.clear()  # crude, but a process rarely sees this many versions
            await self._load_plans(connection, versions - self._plans.keys())
        found = [(str(r[0]), self._plans.get((str(r[1]), str(r[2]), str(r[3])))) for r in rows]
        return [(workflow_id, plan) for workflow_id, plan in found if plan is not None]

    async def _load_plans(
        self, connection: AsyncConnection, missing: set[tuple[str, str, str]]
    ) -> None:
        """Plans by (business line, journey, version): a version never changes, so each is
        read and parsed once per process (every batch of events would otherwise parse the
        Plan of every run it might signal)."""
        if not missing:
            return
        lines, names, versions = (list(column) for column in zip(*sorted(missing), strict=True))
        rows = await connection.execute(
            text(
                "SELECT v.business_line, v.name, v.version, v.plan FROM resource_versions v"
                " JOIN unnest(CAST(:lines AS text[]), CAST(:names AS text[]),"
                " CAST(:versions AS text[])) AS w(line, name, version)"
                " ON v.kind = 'Journey' AND v.business_line = w.line AND v.name = w.name"
                " AND v.version = w.version"
            ),
            {"lines": lines, "names": names, "versions": versions},
        )
        for line, name, version, plan in rows:
            self._plans[(str(line), str(name), str(version))] = Plan.model_validate(plan)


def _holds(source: str, context: dict[str, Any]) -> bool:
    try:
        return bool(evaluate_expression(source, context))
    except Exception:  # noqa: BLE001 - a failing `where` is false, as in the interpreter
        return False
