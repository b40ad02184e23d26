"""The Temporal worker: every workflow and every activity, on one task queue.

Run it with `cjo worker`. Workers are stateless: start more of them to scale out; stop
one with SIGINT or SIGTERM and it finishes the activities in hand before it exits.

Unless `CJO_DISPATCHER_IN_WORKER` is off, `cjo worker` (and `cjo dev`) also run the outbox
dispatcher in the same process; `cjo dispatcher` runs one alone. Dispatchers side by side
never deliver a message twice, so every worker may run one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from cjo.activities.benefits.grants import BenefitActivities
from cjo.activities.calls.catalog import default_registry
from cjo.activities.calls.registry import ActivityRegistry
from cjo.activities.calls.runner import CallActivities
from cjo.activities.messaging.send import MessagingActivities
from cjo.activities.people.profiles import ProfileActivities
from cjo.activities.people.segments import SegmentActivities
from cjo.activities.risk.policies import RiskActivities
from cjo.activities.runs.campaigns import CampaignActivities
from cjo.activities.runs.journeys import JourneyActivities
from cjo.activities.runs.routing import RoutingActivities
from cjo.delivery.dispatcher import Dispatcher
from cjo.delivery.feedback import DeliveryFeedback
from cjo.runtime.settings import Settings
from cjo.store.db import SessionFactory
from cjo.workflows.campaign import CampaignWorkflow
from cjo.workflows.journey import JourneyWorkflow

WORKFLOWS: Sequence[type] = (JourneyWorkflow, CampaignWorkflow)
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class WorkerTuning:
    max_concurrent_activities: int = 100
    max_concurrent_workflow_tasks: int = 100
    max_concurrent_local_activities: int = 200


def activities(
    sessions: SessionFactory,
    client: Client,
    task_queue: str,
    registry: ActivityRegistry | None = None,
) -> list[Callable[..., Any]]:
    """Every activity CJO runs, bound to its dependencies."""
    holders: list[object] = [
        CampaignActivities(sessions),
        RoutingActivities(sessions, client, task_queue),
        JourneyActivities(sessions),
        MessagingActivities(sessions),
        BenefitActivities(sessions),
        RiskActivities(sessions),
        SegmentActivities(sessions),
        ProfileActivities(sessions),
        CallActivities(sessions, registry or default_registry()),
    ]
    found: list[Callable[..., Any]] = []
    for holder in holders:
        for name in dir(type(holder)):
            member = getattr(holder, name)
            if callable(member) and hasattr(member, "__temporal_activity_definition"):
                found.append(member)
    return found


def sandbox() -> SandboxedWorkflowRunner:
    # CJO's own modules, pydantic and the CEL extension are deterministic to import once;
    # re-importing them per workflow run would only cost time.
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "cjo", "cel", "pydantic", "pydantic_core", "sqlalchemy", "sqlmodel", "jinja2", "yaml"
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_worker(
    client: Client,
    sessions: SessionFactory,
    *,
    task_queue: str,
    tuning: WorkerTuning | None = None,
    registry: ActivityRegistry | None = None,
) -> Worker:
    tuning = tuning or WorkerTuning()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities(sessions, client, task_queue, registry),
        workflow_runner=sandbox(),
        max_concurrent_activities=tuning.max_concurrent_activities,
        max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        max_concurrent_local_activities=tuning.max_concurrent_local_activities,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


def build_dispatcher(settings: Settings, sessions: SessionFactory, client: Client) -> Dispatcher:
    """A dispatcher whose `delivered` and `failed` events reach running journeys."""
    routing = RoutingActivities(sessions, client, settings.task_queue)
    return Dispatcher(sessions, settings, feedback=DeliveryFeedback(sessions, routing))


@contextlib.asynccontextmanager
async def dispatching(dispatcher: Dispatcher | None) -> AsyncIterator[None]:
    """Run `dispatcher` (if any) in the background; on the way out it finishes its batches."""
    if dispatcher is None:
        yield
        return
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        try:
            await running
        finally:
            await dispatcher.aclose()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_until_signalled(worker: Worker, *, dispatcher: Dispatcher | None = None) -> None:
    """Run the worker (and the dispatcher, when given) until SIGINT or SIGTERM, then shut
    both down gracefully."""
    stop = _stop_on_signals()
    async with dispatching(dispatcher):
        running = asyncio.create_task(worker.run())
        await stop.wait()
        await worker.shutdown()
        await running


async def dispatch_until_signalled(dispatcher: Dispatcher) -> None:
    """Run only the dispatcher until SIGINT or SIGTERM; it finishes its batches in hand."""
    stop = _stop_on_signals()
    async with dispatching(dispatcher):
        await stop.wait()
