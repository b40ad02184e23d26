"""Record the journey histories that test_replay.py replays.

    .venv/bin/python -m tests.workflows.record_histories

Runs journeys with the real worker and activities against a throw-away embedded
PostgreSQL: on Temporal's time-skipping test server, and, for continue-as-new, on a
dev server told to suggest it after a few history events. Each execution's history goes
to histories/<generation>/<name>.json (CURRENT_GENERATION); its manifest.json says what
each one exercised, taken
from what the run wrote to `step_log` (step types, outcomes, fallbacks, quiet-hours
delays, kinds of wait and branch case) and from how it ended.

Re-record only when the interpreter changed on purpose: a change that breaks replay of
the committed histories has to go behind `workflow.patched(...)` instead.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import cjo.store.schema  # noqa: F401  (registers every table)
from cjo.activities.runs.campaigns import CampaignActivities, CampaignState, SetCampaignStateInput
from cjo.activities.runs.models import JourneyInput, JourneyOutcome, StopRequest
from cjo.dsl import Plan
from cjo.dsl.plan import (
    BranchPlanStep,
    SegmentCase,
    WaitDuration,
    WaitPlanStep,
    WaitUntilTime,
    WaitUntilTimestamp,
    WhenCase,
)
from cjo.runtime.stack import start_postgres, stop_postgres, temporal_binary
from cjo.steps.rules import in_holdout
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade
from cjo.worker import build_worker
from cjo.workflows.journey import JourneyWorkflow
from tests.workflows.conftest import _test_server
from tests.workflows.support import (
    add_customer,
    approved,
    morning,
    profile_of,
    publish,
    signal_event,
    start,
)

REPO = Path(__file__).resolve().parents[2]
HISTORY_ROOT = REPO / "tests" / "workflows" / "histories"
# One folder per generation of the interpreter's commands: a change behind
# `workflow.patched(...)` starts a new generation, and the old ones stay to be replayed,
# since runs recorded by them may still be running somewhere.
CURRENT_GENERATION = "v2-entry-with-first-write"
HISTORIES = HISTORY_ROOT / CURRENT_GENERATION
MANIFEST_NAME = "manifest.json"
MANIFEST = HISTORIES / MANIFEST_NAME
# The dev server suggests continue-as-new past this many events; the continue_chain
# journey crosses it after its first step.
SUGGEST_CONTINUE_AFTER_EVENTS = 10
# Real seconds to wait for a run to reach a state before giving up.
SETTLE_SECONDS = 60.0
T = TypeVar("T")
# A compiled wait's bound, as the manifest names it.
WAIT_KINDS: dict[type, str] = {
    WaitDuration: "duration",
    WaitUntilTime: "until_time",
    WaitUntilTimestamp: "until_timestamp",
}


# Reading histories (test_replay.py uses these too) -------------------------------------


def load_history(path: Path, workflow_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))


def _decode(payloads: Sequence[Payload], kind: type[T]) -> T:
    (value,) = pydantic_data_converter.payload_converter.from_payloads(payloads, [kind])
    assert isinstance(value, kind)
    return value


def journey_input(history: WorkflowHistory) -> JourneyInput:
    started = history.events[0].workflow_execution_started_event_attributes
    return _decode(started.input.payloads, JourneyInput)


def _closed_with(history: WorkflowHistory, attributes: str, field: str) -> Sequence[Payload]:
    """The payloads of the closing event, if the execution closed that way; else none."""
    last = history.events[-1]
    if last.WhichOneof("attributes") != attributes:
        return []
    payloads: Sequence[Payload] = getattr(getattr(last, attributes), field).payloads
    return payloads


def journey_outcome(history: WorkflowHistory) -> JourneyOutcome | None:
    """The run's result, or None if it did not complete (it continued as new)."""
    result = _closed_with(history, "workflow_execution_completed_event_attributes", "result")
    return _decode(result, JourneyOutcome) if result else None


def continued_with(history: WorkflowHistory) -> JourneyInput | None:
    """The input this run handed to the next one, if it continued as new."""
    handed_on = _closed_with(
        history, "workflow_execution_continued_as_new_event_attributes", "input"
    )
    return _decode(handed_on, JourneyInput) if handed_on else None


def journey_path(history: WorkflowHistory) -> list[str]:
    """Every step run so far when the execution closed (a continued run includes the
    steps of the executions before it, as its state does)."""
    outcome = journey_outcome(history)
    if outcome is not None:
        return outcome.path
    handed_on = continued_with(history)
    assert handed_on is not None and handed_on.state is not None, "the run did not close"
    return handed_on.state.path


def step_types(history: WorkflowHistory) -> set[str]:
    plan = journey_input(history).plan
    return {plan.steps[step_id].type for step_id in journey_path(history)}


# Recording ---------------------------------------------------------------------------


@dataclass
class Recorder:
    sessions: SessionFactory
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def save(
        self,
        name: str,
        source: str,
        handle: WorkflowHandle[Any, Any],
        also: Sequence[str] = (),
    ) -> None:
        """Write the history of the execution `handle` names and what it exercised
        (`also`: features the step log cannot show, such as a hold)."""
        history = await handle.fetch_history()
        data = journey_input(history)
        path = journey_path(history)
        already_run = data.state.path if data.state is not None else []
        ran_here = set(path[len(already_run) :])
        started = history.events[0].workflow_execution_started_event_attributes
        run_key = f"{history.workflow_id}@{started.first_execution_run_id}"
        found = await self._step_features(data.plan, run_key, ran_here)
        outcome = journey_outcome(history)
        if outcome is not None:
            found.add(f"end_reason:{outcome.end_reason}")
            if outcome.converted_at is not None:
                found.add("goal:converted")
        else:
            found.add("continue_as_new")
        if data.state is not None:
            found.add("continued_from_state")
        if in_holdout(data.plan, data.user_id):
            found.add("holdout")
        if data.state is None and data.profile is not None:
            found.add("entered_with_first_write")
        found.update(also)
        HISTORIES.mkdir(parents=True, exist_ok=True)
        target = HISTORIES / f"{name}.json"
        # Indented, so a re-recording shows up in review as a readable diff.
        target.write_text(json.dumps(history.to_json_dict(), indent=1) + "\n", "utf-8")
        self.manifest[name] = {
            "source": source,
            "workflow_id": history.workflow_id,
            "path": path,
            "step_types": sorted(step_types(history)),
            "features": sorted(found),
        }
        print(f"{name}: {len(history.events)} events, {target.stat().st_size} bytes")  # noqa: T201

    async def _step_features(self, plan: Plan, run_key: str, ran_here: set[str]) -> set[str]:
        async with self.sessions() as session:
            connection = await session.connection()
            rows = await connection.execute(
                text(
                    "SELECT step_id, step_type, outcome, detail FROM step_log "
                    "WHERE run_key = :run_key ORDER BY id"
                ),
                {"run_key": run_key},
            )
            logged = [tuple(row) for row in rows]
        found: set[str] = set()
        for step_id, step_type, outcome, detail in logged:
            if step_id not in ran_here or step_id not in plan.steps:
                continue
            step = plan.steps[step_id]
            if step_type not in ("branch", "end"):  # a case index or nothing says little
                found.add(f"{step_type}:{outcome}")
            if step_type == "send" and detail.get("fallback_used"):
                found.add("send:fallback")
            elif isinstance(step, BranchPlanStep):
                cases = step.params.cases
                kind = "default" if outcome == "default" else _case_kind(cases[int(outcome)])
                found.add(f"branch:{kind}")
            elif isinstance(step, WaitPlanStep):
                kind = WAIT_KINDS[type(step.params)]
                found.add(f"wait:{kind}")
        return found


def _case_kind(case: WhenCase | SegmentCase) -> str:
    return "cel" if isinstance(case, WhenCase) else "segment"


async def _settle(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while not await check():
        if loop.time() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def reach(handle: WorkflowHandle[Any, Any], step: str) -> None:
    """Wait until the run is in `step` (a wait_for's signal must land while it listens)."""

    async def there() -> bool:
        position = await handle.query(JourneyWorkflow.position)
        return bool(position["step"] == step)

    await _settle(there, f"{handle.id} to reach {step}")


async def listening(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until the run has started a timer (a holdout run waiting out its goal window)."""

    async def timer_started() -> bool:
        history = await handle.fetch_history()
        return any(event.HasField("timer_started_event_attributes") for event in history.events)

    await _settle(timer_started, f"{handle.id} to start a timer")


@dataclass
class Scene:
    env: WorkflowEnvironment
    client: Client
    task_queue: str
    sessions: SessionFactory
    recorder: Recorder


# Scenarios ---------------------------------------------------------------------------


async def _start(
    scene: Scene,
    plan: Plan,
    user_id: str,
    trigger: str,
    props: dict[str, Any] | None = None,
    **options: Any,
) -> WorkflowHandle[JourneyWorkflow, JourneyOutcome]:
    """Start a run as the router does: with the profile it read for the trigger's `where`."""
    profile = await profile_of(scene.sessions, user_id)
    return await start(
        scene.client, scene.task_queue, plan, user_id, trigger, props, profile=profile, **options
    )


CARD = {"tier": "gold", "card_id": "c-1", "card_last4": "4321", "tier_name": "金卡"}
FUND_ORDER = {
    "amount": 5000,
    "channel": "app",
    "order_id": "o-1",
    "fund_name": "示例稳健债券A",
    "fund_code": "000001",
}
EVERY_STEP = "tests/workflows/bundles/every_step.yaml"
CONTINUE_CHAIN = "tests/workflows/bundles/continue_chain.yaml"
PAUSED = "tests/workflows/bundles/paused.yaml"
EVERY_STEP_PATH = [
    "screen",
    "gate",
    "arm",
    "route",
    "reward",
    "notify",
    "await_click",
    "await_reply",
    "remember",
    "pick_track",
    "pause",
    "next_morning",
    "far_future",
    "finish",
]


async def every_step(scene: Scene) -> None:
    """All ten step types for one user; the send lands in quiet hours and falls back."""
    # `publish` joins its argument to examples/: an absolute path takes over the join.
    plan = await publish(scene.sessions, str(REPO / EVERY_STEP))
    await add_customer(scene.sessions, "u-every", tags=["replay-member"])  # no push address
    await morning(scene.env, "22:30")
    far_step = plan.steps["far_future"]
    assert isinstance(far_step, WaitPlanStep) and isinstance(far_step.params, WaitUntilTimestamp)
    far_future = datetime.fromisoformat(far_step.params.until_timestamp)
    # Past that moment the wait would end at once and record no timer: move it later.
    assert far_future > await scene.env.get_current_time() + timedelta(days=30)
    handle = await _start(scene, plan, "u-every", "replay_started")
    await scene.env.sleep(timedelta(hours=10))  # past 08:00, when quiet hours end
    await reach(handle, "await_click")
    await signal_event(handle, "purchase")  # the goal, without exit
    await signal_event(handle, "clicked")
    outcome = await handle.result()
    assert outcome.end_reason == "completed" and outcome.converted_at is not None
    assert outcome.path == EVERY_STEP_PATH
    await scene.recorder.save("every_step", EVERY_STEP, handle)


async def risk_reject(scene: Scene) -> None:
    """A blocklisted applicant: `reject` without `on.reject` ends the run."""
    plan = await publish(scene.sessions, "card_activation.yaml")
    await morning(scene.env)
    await add_customer(scene.sessions, "u-reject", phone="13900000009")
    async with scene.sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(
            text(
                "INSERT INTO risk_lists (business_line, list, value) "
                "VALUES ('credit-card', 'blocklist', '13900000009') ON CONFLICT DO NOTHING"
            )
        )
    handle = await _start(scene, plan, "u-reject", "card_issued", CARD)
    outcome = await handle.result()
    assert outcome.end_reason == "rejected" and outcome.path == ["risk_check"]
    await scene.recorder.save("risk_reject", "examples/card_activation.yaml", handle)


async def exit_event(scene: Scene) -> None:
    """An exit event for another card is ignored; one for this card ends the run."""
    plan = await publish(scene.sessions, "card_activation.yaml")
    await morning(scene.env)
    await add_customer(scene.sessions, "u-exit")
    handle = await _start(scene, plan, "u-exit", "card_issued", CARD)
    await reach(handle, "await_activation")
    await scene.env.sleep(timedelta(hours=30))
    await signal_event(handle, "card_cancelled", {"card_id": "other"})
    await signal_event(handle, "card_cancelled", {"card_id": "c-1"})
    outcome = await handle.result()
    assert outcome.end_reason == "exited"
    await scene.recorder.save("exit_event", "examples/card_activation.yaml", handle)


FUND_PURCHASE = "examples/abandoned_fund_purchase.yaml"


async def _awaiting_payment(scene: Scene, user_id: str) -> WorkflowHandle[Any, JourneyOutcome]:
    plan = await publish(scene.sessions, Path(FUND_PURCHASE).name)
    await morning(scene.env)
    await add_customer(scene.sessions, user_id)
    handle = await _start(scene, plan, user_id, "fund_order_started", FUND_ORDER, key="o-1")
    await reach(handle, "await_payment")
    return handle


async def goal_exit(scene: Scene) -> None:
    """Paying the order is the goal with `exit: true`: the run ends as converted."""
    handle = await _awaiting_payment(scene, "u-goal")
    await signal_event(handle, "fund_order_paid", {"order_id": "o-1"})
    outcome = await handle.result()
    assert outcome.end_reason == "converted" and outcome.path == ["await_payment"]
    await scene.recorder.save("goal_exit", FUND_PURCHASE, handle)


async def stopped(scene: Scene) -> None:
    """The `stop` signal ends a run that is waiting."""
    handle = await _awaiting_payment(scene, "u-stop")
    await handle.signal(JourneyWorkflow.on_stop, StopRequest())
    outcome = await handle.result()
    assert outcome.end_reason == "stopped"
    await scene.recorder.save("stopped", FUND_PURCHASE, handle)


async def holdout(scene: Scene) -> None:
    """A holdout entrant runs no step, yet its goal still counts."""
    plan = await publish(scene.sessions, "dormant_savers.yaml")
    # The holdout is a stable hash of the user id: take the first id that falls in it.
    user = next(f"u-holdout-{n}" for n in range(1000) if in_holdout(plan, f"u-holdout-{n}"))
    await morning(scene.env)
    await add_customer(scene.sessions, user, lifecycle="dormant", attrs={"aum": 80000})
    handle = await _start(scene, plan, user, "audience")
    await listening(handle)
    await signal_event(handle, "deposit", {"amount": 5000})
    outcome = await handle.result()
    assert outcome.end_reason == "converted" and outcome.path == []
    await scene.recorder.save("holdout", "examples/dormant_savers.yaml", handle)


async def paused(scene: Scene) -> None:
    """The campaign pauses while its user waits: the send is held until it resumes."""
    plan = await publish(scene.sessions, str(REPO / PAUSED))
    await add_customer(scene.sessions, "u-paused")
    campaigns = CampaignActivities(scene.sessions)
    campaign = await campaigns.create(journey=plan.journey.name, business_line="ops")

    async def move(state: CampaignState) -> None:
        now = await scene.env.get_current_time()
        await campaigns.set_state(
            SetCampaignStateInput(campaign_id=campaign.id, state=state, at=now)
        )

    await approved(campaigns, campaign.id)
    await move("running")
    handle = await _start(scene, plan, "u-paused", "paused_started", campaign_id=campaign.id)
    await reach(handle, "later")
    await move("paused")
    await scene.env.sleep(timedelta(hours=3))
    async with scene.sessions() as session:
        held = await session.execute(
            text("SELECT status FROM enrolments WHERE user_id = :user"), {"user": "u-paused"}
        )
        assert held.scalar_one() == "held"
    await move("running")
    await handle.signal(JourneyWorkflow.on_resume)
    outcome = await handle.result()
    assert outcome.end_reason == "completed" and outcome.path == ["later", "hello", "points"]
    # The grant is the last step and no goal is left: its activity ends the enrolment.
    also = ["campaign:held", "ended_by_step_activity"]
    await scene.recorder.save("paused", PAUSED, handle, also=also)


TIME_SKIPPING_SCENARIOS = (
    every_step,
    risk_reject,
    exit_event,
    goal_exit,
    stopped,
    holdout,
    paused,
)


async def continue_as_new(recorder: Recorder) -> None:
    """A dev server that suggests continue-as-new early: the run continues between steps."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AFTER_EVENTS}",
        ],
    )
    async with env, _worker(env, recorder) as scene:
        plan = await publish(scene.sessions, str(REPO / CONTINUE_CHAIN))
        await add_customer(scene.sessions, "u-continue")
        handle = await _start(scene, plan, "u-continue", "replay_started")
        outcome = await handle.result()
        assert outcome.path == ["first_mark", "second_mark"]
        run_id: str | None = handle.first_execution_run_id
        runs = 0
        while run_id is not None:
            runs += 1
            run = scene.client.get_workflow_handle(handle.id, run_id=run_id)
            await recorder.save(f"continue_as_new_{runs}", CONTINUE_CHAIN, run)
            last = (await run.fetch_history()).events[-1]
            run_id = _next_run(last)
        assert runs >= 2, "the dev server never suggested continue-as-new"


def _next_run(last: HistoryEvent) -> str | None:
    if last.HasField("workflow_execution_continued_as_new_event_attributes"):
        return last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return None


@asynccontextmanager
async def _worker(env: WorkflowEnvironment, recorder: Recorder) -> AsyncIterator[Scene]:
    task_queue = f"record-{uuid.uuid4().hex[:8]}"
    async with build_worker(env.client, recorder.sessions, task_queue=task_queue):
        yield Scene(env, env.client, task_queue, recorder.sessions, recorder)


async def record_all(sessions: SessionFactory) -> dict[str, dict[str, Any]]:
    recorder = Recorder(sessions)
    for scenario in TIME_SKIPPING_SCENARIOS:
        # A fresh server per scenario: every_step skips its clock years ahead.
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter, test_server_existing_path=_test_server()
        )
        async with env, _worker(env, recorder) as scene:
            await scenario(scene)
    await continue_as_new(recorder)
    return recorder.manifest


async def _main(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        manifest = await record_all(make_sessions(engine))
    finally:
        await engine.dispose()
    for stale in HISTORIES.glob("*.json"):
        if stale.stem not in manifest and stale != MANIFEST:
            stale.unlink()
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cjo-record-") as scratch:
        data_dir = Path(scratch) / "pg"
        url = start_postgres(data_dir)
        try:
            upgrade(url)
            asyncio.run(_main(url))
        finally:
            stop_postgres(data_dir)


if __name__ == "__main__":
    main()
