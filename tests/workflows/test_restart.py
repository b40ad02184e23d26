"""SLOW durability proof (about a minute per test): real dev server, real worker processes.

Not time-skipping: a Temporal dev server of its own (temporary CJO home, free ports,
SQLite file kept across restarts) and the CJO worker in a separate process
(`_restart_worker.py`). 200 users run send → wait 3s → grant → end. Mid-run, the first
test SIGKILLs the worker and starts a new one; the second stops and restarts the Temporal
server while the worker keeps going. Either way every run must end `completed`, with
exactly one message and one grant per user: none lost, none repeated. The minute is
mostly Temporal's own recovery: an activity whose task or completion was lost (in the
killed worker, or in flight while the server was down) is retried only when its 60s
start-to-close timeout expires.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import ProfileActivities, ProfileInput, UpsertProfilesInput
from cjo.control.resources import ResourceActivities
from cjo.dsl import Plan
from cjo.runtime.settings import Settings
from cjo.runtime.stack import free_port, start_temporal, stop_temporal
from cjo.runtime.temporal import connect
from cjo.store.db import SessionFactory
from tests.workflows._restart_worker import READY_LINE
from tests.workflows.support import start, workflow_id

BUNDLE = Path(__file__).parent / "bundles" / "restart.yaml"
WORKER_SCRIPT = Path(__file__).with_name("_restart_worker.py")
REPO = Path(__file__).resolve().parents[2]
USERS = 200
# Disrupt once this many sends are in the outbox: well into the run, grants still to come.
DISRUPT_AFTER_SENDS = 60
# Long enough for the worker's polls and activity completions to fail against a dead server.
SERVER_DOWN_SECONDS = 5.0
# The worker's own graceful shutdown allows 30s for activities in hand.
GRACEFUL_SECONDS = 40.0
# A safety net so a broken build fails instead of hanging; recovery takes about 70s.
SETTLE_SECONDS = 150.0


@dataclass(frozen=True)
class DevServer:
    settings: Settings
    address: str


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    settings = Settings(
        home=tmp_path / "cjo", temporal_port=free_port(), temporal_ui_port=free_port()
    )
    try:
        yield DevServer(settings, start_temporal(settings))
    finally:
        stop_temporal(settings)


class WorkerProcess:
    """`_restart_worker.py` in a child process; the test decides how it dies."""

    def __init__(self, database_url: str, server: DevServer, task_queue: str, logs: Path) -> None:
        self.task_queue = task_queue
        self._command = [sys.executable, str(WORKER_SCRIPT), database_url, server.address]
        self._logs = logs
        self.process: subprocess.Popen[str] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        log = self._logs / f"worker-{len(self.exit_codes)}.log"
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [*self._command, self.task_queue],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == READY_LINE, log.read_text()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, activities in hand are abandoned mid-flight."""
        assert self.process is not None
        self.process.kill()
        self._reap(self.process)

    def stop(self) -> None:
        """SIGTERM: the graceful shutdown `cjo.worker.run_until_signalled` gives."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=GRACEFUL_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._reap(self.process)

    def _reap(self, process: subprocess.Popen[str]) -> None:
        self.exit_codes.append(process.wait())
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def worker(database_url: str, dev_server: DevServer, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(database_url, dev_server, f"restart-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(dev_server: DevServer) -> Client:
    return await connect(dev_server.settings, dev_server.address)


# Helpers -----------------------------------------------------------------------------


async def _publish(sessions: SessionFactory) -> Plan:
    resources = ResourceActivities(sessions, default_registry())
    outcome = await resources.apply(BUNDLE.read_text(encoding="utf-8"))
    assert outcome.valid, [d.format_text() for d in outcome.diagnostics]
    plan = await resources.journey_plan("durability", "restart-proof")
    assert plan is not None
    return plan


async def _add_customers(sessions: SessionFactory, user_ids: list[str]) -> None:
    # Inbox needs no address and its consent is implied: a bare profile is reachable.
    await ProfileActivities(sessions).upsert_profiles(
        UpsertProfilesInput(
            profiles=[ProfileInput(id=user_id, name="韩梅梅") for user_id in user_ids],
            at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )


async def _scalar(sessions: SessionFactory, sql: str) -> int:
    async with sessions() as session:
        connection = await session.connection()
        return int((await connection.execute(text(sql))).scalar_one())


async def _rows(sessions: SessionFactory, sql: str) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        return [tuple(row) for row in await connection.execute(text(sql))]


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Launched:
    plan: Plan
    users: list[str]


@pytest.fixture
async def launched(sessions: SessionFactory, client: Client, worker: WorkerProcess) -> Launched:
    """200 runs started the way the router starts them, a worker taking them on."""
    plan = await _publish(sessions)
    users = [f"u{number:03d}" for number in range(USERS)]
    await _add_customers(sessions, users)
    for user_id in users:
        await start(client, worker.task_queue, plan, user_id, "restart_started")
    # The worker comes after the starts, so the disruption lands among the sends too.
    worker.start()

    async def sends_under_way() -> bool:
        return await _scalar(sessions, "SELECT count(*) FROM messages") >= DISRUPT_AFTER_SENDS

    await _until(sends_under_way, f"{DISRUPT_AFTER_SENDS} sends")
    return Launched(plan, users)


async def _assert_each_effect_exactly_once(sessions: SessionFactory) -> None:
    async def all_ended() -> bool:
        return (
            await _scalar(sessions, "SELECT count(*) FROM enrolments WHERE status = 'ended'")
            == USERS
        )

    await _until(all_ended, "every run to end")
    assert await _rows(
        sessions, "SELECT status, end_reason, count(*) FROM enrolments GROUP BY 1, 2"
    ) == [("ended", "completed", USERS)]
    for table in ("messages", "grants"):
        totals = await _rows(
            sessions,
            f"SELECT count(*), count(DISTINCT key), count(DISTINCT user_id) FROM {table}",
        )
        assert totals == [(USERS, USERS, USERS)], table
        repeated = await _rows(
            sessions, f"SELECT user_id FROM {table} GROUP BY user_id HAVING count(*) <> 1"
        )
        assert repeated == [], table
    # The ledger counter moves in the grant's transaction: a repeated grant would show here.
    assert await _rows(sessions, "SELECT benefit, units_granted FROM benefit_ledgers") == [
        ("restart-points", USERS)
    ]
    assert await _rows(
        sessions, "SELECT step_id, outcome, count(*) FROM step_log GROUP BY 1, 2 ORDER BY 1"
    ) == [("pause", "done", USERS), ("reward", "granted", USERS), ("welcome", "sent", USERS)]


@dataclass(frozen=True)
class Recoveries:
    """What Temporal had to redo, read from the runs' histories."""

    retried_activities: int  # activity executions beyond the first attempt
    timed_out_workflow_tasks: int  # a worker gone: its workflow tasks go to another one
    failed_workflow_tasks: int  # nondeterminism on replay would show here


async def _recoveries(client: Client, launched: Launched) -> Recoveries:
    retried = timed_out = failed = 0
    for user_id in launched.users:
        handle = client.get_workflow_handle(workflow_id(launched.plan, user_id))
        history = await handle.fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                retried += event.activity_task_started_event_attributes.attempt > 1
            timed_out += event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
            failed += event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    return Recoveries(retried, timed_out, failed)


# The proofs --------------------------------------------------------------------------


async def test_a_killed_worker_neither_loses_nor_repeats_a_send_or_grant(
    sessions: SessionFactory, client: Client, worker: WorkerProcess, launched: Launched
) -> None:
    worker.kill()
    sent = await _scalar(sessions, "SELECT count(*) FROM messages")
    granted = await _scalar(sessions, "SELECT count(*) FROM grants")
    # Killed mid-run: some users sent to and waiting for their grant, on that worker.
    assert sent >= DISRUPT_AFTER_SENDS and granted < sent
    worker.start()
    await _assert_each_effect_exactly_once(sessions)
    recoveries = await _recoveries(client, launched)
    # The dead worker's runs moved to the new one and replayed there without a hitch.
    assert recoveries.timed_out_workflow_tasks > 0
    assert recoveries.failed_workflow_tasks == 0


async def test_a_restarted_server_neither_loses_nor_repeats_a_send_or_grant(
    sessions: SessionFactory,
    client: Client,
    worker: WorkerProcess,
    dev_server: DevServer,
    launched: Launched,
) -> None:
    await asyncio.to_thread(stop_temporal, dev_server.settings)
    await asyncio.sleep(SERVER_DOWN_SECONDS)
    assert await _scalar(sessions, "SELECT count(*) FROM grants") < USERS  # gone mid-run
    await asyncio.to_thread(start_temporal, dev_server.settings)
    await _assert_each_effect_exactly_once(sessions)
    # The grants left to do went to the same worker process: it reconnected by itself.
    assert worker.alive() and worker.exit_codes == []
    assert (await _recoveries(client, launched)).failed_workflow_tasks == 0
