"""The baseline for bench/journeys.py: send → wait → grant, written by hand for Temporal.

What an engineer would write without CJO: one workflow class with the steps in code, and
two activities that INSERT a `messages` row and a `grants` row (ON CONFLICT on `key` DO
NOTHING, so a retried activity changes nothing). No plan, no profile, no consent or
contact rules, no ledger, no step log. It lives in a module of its own so the workflow
sandbox can pass it through instead of re-running the benchmark script for every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

with workflow.unsafe.imports_passed_through():
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cjo.worker import GRACEFUL_SHUTDOWN, WorkerTuning, sandbox

BUSINESS_LINE = "bench-hand"
TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))

INSERT_MESSAGE = """
INSERT INTO messages (id, key, business_line, journey, workflow_id, step_id, user_id, channel,
                      template, marketing, status, subject, body, attempts)
VALUES (:id, :key, :business_line, 'hand', :workflow_id, 'welcome', :user_id, 'inbox',
        'welcome', true, 'pending', 'Welcome', 'Welcome!', 0)
ON CONFLICT (key) DO NOTHING
"""
INSERT_GRANT = """
INSERT INTO grants (id, key, business_line, benefit, benefit_version, user_id, quantity,
                    unit_value, value, unit, benefit_type, status, code, workflow_id, step_id)
VALUES (:id, :key, :business_line, 'points', '1', :user_id, 1, 10, 10, 'points', 'points',
        'granted', :id, :workflow_id, 'reward')
ON CONFLICT (key) DO NOTHING
"""


@dataclass(frozen=True)
class Effect:
    key: str
    user_id: str
    workflow_id: str


class HandActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="hand.send")
    async def send(self, effect: Effect) -> None:
        await self._insert(INSERT_MESSAGE, effect)

    @activity.defn(name="hand.grant")
    async def grant(self, effect: Effect) -> None:
        await self._insert(INSERT_GRANT, effect)

    async def _insert(self, sql: str, effect: Effect) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text(sql),
                {
                    "id": effect.key,
                    "key": effect.key,
                    "business_line": BUSINESS_LINE,
                    "user_id": effect.user_id,
                    "workflow_id": effect.workflow_id,
                },
            )


@workflow.defn(name="HandJourney")
class HandJourney:
    @workflow.run
    async def run(self, user_id: str, wait_seconds: float) -> str:
        workflow_id = workflow.info().workflow_id
        await workflow.execute_activity_method(
            HandActivities.send,
            Effect(f"{workflow_id}/welcome", user_id, workflow_id),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        await workflow.sleep(wait_seconds)
        await workflow.execute_activity_method(
            HandActivities.grant,
            Effect(f"{workflow_id}/reward", user_id, workflow_id),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return "completed"


def build_hand_worker(client: Client, engine: AsyncEngine, *, task_queue: str) -> Worker:
    """The same worker settings as `cjo.worker.build_worker`, with the hand-written code."""
    tuning = WorkerTuning()
    restrictions = sandbox().restrictions.with_passthrough_modules(__name__)
    holder = HandActivities(engine)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[HandJourney],
        activities=[holder.send, holder.grant],
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        max_concurrent_activities=tuning.max_concurrent_activities,
        max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        max_concurrent_local_activities=tuning.max_concurrent_local_activities,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )
