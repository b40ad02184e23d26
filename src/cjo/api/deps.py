"""What routes depend on, as `Annotated` aliases: `SessionsDep`, `TemporalDep`, ...

The session factory and the Temporal client live in `ApiState` on the app, made once
(by the tests, or by the lifespan from settings); every request reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from temporalio.client import Client

from cjo.activities.calls.registry import ActivityRegistry
from cjo.activities.people.profiles import ProfileActivities
from cjo.activities.runs.campaigns import CampaignActivities
from cjo.activities.runs.routing import RoutingActivities
from cjo.api.problems import ApiProblem
from cjo.control.resources import ResourceActivities
from cjo.control.stats import StatsActivities
from cjo.runtime.settings import Settings
from cjo.store.db import SessionFactory


@dataclass
class ApiState:
    settings: Settings
    task_queue: str
    registry: ActivityRegistry
    sessions: SessionFactory | None = None
    temporal: Client | None = None


def _unavailable(what: str) -> ApiProblem:
    return ApiProblem(503, "unavailable", f"{what} is not connected")


def get_state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.cjo)


StateDep = Annotated[ApiState, Depends(get_state)]


def get_sessions(state: StateDep) -> SessionFactory:
    if state.sessions is None:
        raise _unavailable("the database")
    return state.sessions


def get_temporal(state: StateDep) -> Client:
    if state.temporal is None:
        raise _unavailable("Temporal")
    return state.temporal


def get_optional_temporal(state: StateDep) -> Client | None:
    return state.temporal


def get_task_queue(state: StateDep) -> str:
    return state.task_queue


SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
# For reads that still answer, with less, while Temporal is away.
OptionalTemporalDep = Annotated[Client | None, Depends(get_optional_temporal)]
TaskQueueDep = Annotated[str, Depends(get_task_queue)]


def get_resources(state: StateDep, sessions: SessionsDep) -> ResourceActivities:
    return ResourceActivities(sessions, state.registry)


def get_profiles(sessions: SessionsDep) -> ProfileActivities:
    return ProfileActivities(sessions)


def get_campaigns(sessions: SessionsDep) -> CampaignActivities:
    return CampaignActivities(sessions)


def get_stats(sessions: SessionsDep) -> StatsActivities:
    return StatsActivities(sessions)


def get_routing(
    sessions: SessionsDep, temporal: TemporalDep, task_queue: TaskQueueDep
) -> RoutingActivities:
    return RoutingActivities(sessions, temporal, task_queue)


def get_optional_routing(
    sessions: SessionsDep, temporal: OptionalTemporalDep, task_queue: TaskQueueDep
) -> RoutingActivities | None:
    return None if temporal is None else RoutingActivities(sessions, temporal, task_queue)


ResourcesDep = Annotated[ResourceActivities, Depends(get_resources)]
ProfilesDep = Annotated[ProfileActivities, Depends(get_profiles)]
CampaignsDep = Annotated[CampaignActivities, Depends(get_campaigns)]
StatsDep = Annotated[StatsActivities, Depends(get_stats)]
RoutingDep = Annotated[RoutingActivities, Depends(get_routing)]
# For what is stored even while Temporal is away (clicks, inbox reads, SMS replies), unrouted.
OptionalRoutingDep = Annotated[RoutingActivities | None, Depends(get_optional_routing)]
