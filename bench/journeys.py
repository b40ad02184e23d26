"""How fast CJO's journey interpreter moves users, against the same journey written by hand.

Brings up its own embedded PostgreSQL and Temporal dev server (a temporary directory, free
ports; nothing of a developer's stack is touched) and runs each worker in a process of its
own, with the same worker settings (`cjo.worker.WorkerTuning` defaults, the same sandbox).

- Throughput: N users through `bench-flow` (journeys.yaml: send → wait 1s → grant),
  started the way the router starts them (signal-with-start carrying the Plan, for a
  running campaign), in users/s from the first start call to the last close (Temporal's
  close time of each run); then the same for `HandJourney` (handwritten_journey.py); and
  the ratio CJO / hand-written (target >= 0.85). Rounds alternate the two.
- Start-to-first-send latency, p50 and p99: from the moment a run's start call is made to
  `messages.created_at` of its send (PostgreSQL's now() in the transaction that inserts
  the row; client and database share the host clock), under the burst above and under a
  paced arrival.
- What a run costs: worker and Temporal server CPU per run (from /proc), PostgreSQL
  transactions per run (pg_stat_database), and the events of one run's history.
- Memory: the CJO worker process's resident set (VmRSS) before and after M users are
  parked in a 30-day wait (`bench-parked`), counted as parked once `enrolments` says so.
  The SDK keeps at most 1000 runs in a worker's cache, so this is bounded, not per user.

    .venv/bin/python bench/journeys.py [--users N] [--parked M] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _support import latency_line, stop_process  # beside this script
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

import cjo.store.schema  # noqa: F401  (registers every table)
from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import (
    ProfileActivities,
    ProfileContextInput,
    ProfileInput,
    UpsertProfilesInput,
)
from cjo.activities.runs.campaigns import CampaignActivities, SetCampaignStateInput
from cjo.activities.runs.models import JourneyInput
from cjo.activities.runs.routing import JOURNEY_WORKFLOW, workflow_id_for
from cjo.control.resources import ResourceActivities
from cjo.dsl import Plan
from cjo.runtime.settings import Settings
from cjo.runtime.stack import (
    free_port,
    start_postgres,
    start_temporal,
    stop_postgres,
    stop_temporal,
)
from cjo.runtime.temporal import connect
from cjo.steps.run import JourneyEvent
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade
from cjo.worker import build_worker, run_until_signalled

BENCH = Path(__file__).resolve().parent
BUNDLE = BENCH / "journeys.yaml"
BUSINESS_LINE = "bench"
HAND_BUSINESS_LINE = "bench-hand"  # handwritten_journey.BUSINESS_LINE
READY_LINE = "worker ready"
START_CONCURRENCY = 32  # start calls in flight at once (the router's pages do one at a time)
WARM_UP_USERS = 20
PACED_USERS = 100
PACED_PER_SECOND = 10.0  # well below what the box sustains: latency, not queueing
PROFILE_PAGE = 1000
POLL_SECONDS = 0.1
PROGRESS_SECONDS = 15.0
COST_USERS = 100
# PostgreSQL backends publish their transaction counts after 10s idle at the latest.
STATS_SETTLE_SECONDS = 11.0
RSS_SETTLE_SECONDS = 5.0
# This process's own engine pings every connection it hands out (pool_pre_ping), in a
# transaction of its own: each of its queries costs PostgreSQL two transactions.
TRANSACTIONS_PER_SESSION = 2
MAX_CACHED_WORKFLOWS = 1000  # temporalio.worker.Worker's default, which build_worker keeps


# The worker processes ----------------------------------------------------------------


async def serve(kind: str, database_url: str, address: str, task_queue: str) -> None:
    """`--worker KIND`: one worker, run until SIGTERM."""
    # Both workers as `cjo worker` makes them: no pool ping (Temporal retries instead).
    engine = make_engine(database_url, pre_ping=False)
    client = await connect(Settings(), address)
    if kind == "cjo":
        worker = build_worker(client, make_sessions(engine), task_queue=task_queue)
    else:
        from handwritten_journey import build_hand_worker  # beside this script

        worker = build_hand_worker(client, engine, task_queue=task_queue)
    print(READY_LINE, flush=True)
    try:
        await run_until_signalled(worker)
    finally:
        await engine.dispose()


class WorkerProcess:
    def __init__(self, kind: str, database_url: str, address: str, logs: Path) -> None:
        self.kind = kind
        self.task_queue = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
        command = [sys.executable, __file__, "--worker", kind, database_url, address]
        with (logs / f"worker-{kind}.log").open("w") as log:
            self.process = subprocess.Popen(
                [*command, self.task_queue], stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != READY_LINE:
            raise RuntimeError(f"the {kind} worker did not start; see {logs}")

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# The stack ---------------------------------------------------------------------------


@dataclass
class Bench:
    database_url: str
    settings: Settings
    address: str
    sessions: SessionFactory
    client: Client
    logs: Path
    plans: dict[str, Plan]
    campaigns: dict[str, str]
    queries: int = 0  # transactions this process made, to tell them from the workers'

    @property
    def server_pid(self) -> int:
        return int((self.settings.home / "temporal.pid").read_text())

    async def rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        self.queries += TRANSACTIONS_PER_SESSION
        async with self.sessions() as session:
            connection = await session.connection()
            return [tuple(row) for row in await connection.execute(text(sql), params)]

    async def count(self, sql: str, **params: object) -> int:
        return int(str((await self.rows(sql, **params))[0][0]))


@asynccontextmanager
async def embedded_stack() -> AsyncIterator[Bench]:
    home = Path(tempfile.mkdtemp(prefix="cjo-bench-"))
    settings = Settings(home=home / "cjo", temporal_port=free_port(), temporal_ui_port=free_port())
    pg_dir = home / "pg"
    engine = None
    try:
        database_url = await asyncio.to_thread(start_postgres, pg_dir)
        await asyncio.to_thread(upgrade, database_url)
        address = await asyncio.to_thread(start_temporal, settings)
        engine = make_engine(database_url, pool_size=10, max_overflow=10)
        sessions = make_sessions(engine)
        plans = await publish(sessions)
        campaigns = {name: await running_campaign(sessions, name) for name in plans}
        client = await connect(settings, address)
        yield Bench(database_url, settings, address, sessions, client, home, plans, campaigns)
    finally:
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(stop_temporal, settings)
        await asyncio.to_thread(stop_postgres, pg_dir)
        shutil.rmtree(home, ignore_errors=True)


async def publish(sessions: SessionFactory) -> dict[str, Plan]:
    resources = ResourceActivities(sessions, default_registry())
    outcome = await resources.apply(BUNDLE.read_text(encoding="utf-8"))
    if not outcome.valid:
        raise RuntimeError([d.format_text() for d in outcome.diagnostics])
    plans = {}
    for applied in outcome.applied:
        if applied.kind == "Journey":
            plan = await resources.journey_plan(BUSINESS_LINE, applied.name)
            assert plan is not None
            plans[applied.name] = plan
    return plans


async def running_campaign(sessions: SessionFactory, journey: str) -> str:
    campaigns = CampaignActivities(sessions)
    campaign = await campaigns.create(journey=journey, business_line=BUSINESS_LINE)
    now = datetime.now(UTC)
    # Maker-checker: only an approved campaign may run.
    await campaigns.submit(campaign.id, by="bench", audience_size=0, approvals_required=1, at=now)
    await campaigns.approve(campaign.id, by="bench-checker", at=now)
    await campaigns.set_state(
        SetCampaignStateInput(campaign_id=campaign.id, state="running", at=now)
    )
    return campaign.id


async def add_profiles(sessions: SessionFactory, user_ids: list[str]) -> None:
    # Inbox needs no address and its consent is implied: a bare profile is reachable.
    profiles = ProfileActivities(sessions)
    for first in range(0, len(user_ids), PROFILE_PAGE):
        page = user_ids[first : first + PROFILE_PAGE]
        await profiles.upsert_profiles(
            UpsertProfilesInput(
                profiles=[ProfileInput(id=user_id, name="李雷") for user_id in page],
                at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )


# Starting and finishing runs -----------------------------------------------------------

Starter = Callable[[str], Awaitable[str]]  # user id -> workflow id


def cjo_starter(bench: Bench, worker: WorkerProcess, journey: str) -> Starter:
    plan, campaign_id = bench.plans[journey], bench.campaigns[journey]
    trigger = plan.trigger.event or journey
    profiles = ProfileActivities(bench.sessions)

    async def start(user_id: str) -> str:
        # As RoutingActivities._enter does it: the profile it read for the trigger's
        # `where` goes with the run, and signal-with-start, the trigger as the signal.
        loaded = await profiles.profile_context(ProfileContextInput(user_ids=[user_id]))
        bench.queries += TRANSACTIONS_PER_SESSION  # the router's read, not the worker's
        event = JourneyEvent(id=f"bench/{user_id}", name=trigger, ts=datetime.now(UTC))
        workflow_id = workflow_id_for(plan, user_id, None)
        await bench.client.start_workflow(
            JOURNEY_WORKFLOW,
            JourneyInput(
                plan=plan,
                user_id=user_id,
                trigger=event,
                profile=loaded.profiles[0],
                campaign_id=campaign_id,
            ),
            id=workflow_id,
            task_queue=worker.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="event",
            start_signal_args=[event],
        )
        return workflow_id

    return start


def hand_starter(bench: Bench, worker: WorkerProcess, wait_seconds: float) -> Starter:
    async def start(user_id: str) -> str:
        workflow_id = f"hand/{user_id}"
        await bench.client.start_workflow(
            "HandJourney",
            args=[user_id, wait_seconds],
            id=workflow_id,
            task_queue=worker.task_queue,
        )
        return workflow_id

    return start


@dataclass
class Started:
    at: dict[str, float]  # user id -> wall clock when its start call was made
    workflow_ids: list[str]


async def start_all(start: Starter, users: list[str], per_second: float | None = None) -> Started:
    gate = asyncio.Semaphore(START_CONCURRENCY)
    at: dict[str, float] = {}

    async def one(user_id: str) -> str:
        async with gate:
            at[user_id] = time.time()
            return await start(user_id)

    tasks = []
    for user_id in users:
        tasks.append(asyncio.create_task(one(user_id)))
        if per_second:
            await asyncio.sleep(1 / per_second)
    return Started(at, list(await asyncio.gather(*tasks)))


async def until(check: Callable[[], Awaitable[int]], target: int, what: str) -> None:
    last_report = time.monotonic()
    while (done := await check()) < target:
        if time.monotonic() - last_report > PROGRESS_SECONDS:
            print(f"    ... {done}/{target} {what}", flush=True)
            last_report = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


async def last_close(client: Client, workflow_ids: list[str]) -> float:
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def closed(workflow_id: str) -> float:
        async with gate:
            while True:
                described = await client.get_workflow_handle(workflow_id).describe()
                if described.close_time is not None:
                    return described.close_time.timestamp()
                await asyncio.sleep(POLL_SECONDS)

    return max(await asyncio.gather(*(closed(w) for w in workflow_ids)))


@dataclass
class Round:
    users: int
    users_per_second: float
    latencies: list[float]
    worker_cpu: float  # seconds, the worker process, over the round
    server_cpu: float  # seconds, the Temporal dev server, over the round

    def per_run_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.users

    @staticmethod
    def combined(rounds: list[Round]) -> Round:
        users = sum(r.users for r in rounds)
        return Round(
            users,
            users / sum(r.users / r.users_per_second for r in rounds),
            [latency for r in rounds for latency in r.latencies],
            sum(r.worker_cpu for r in rounds),
            sum(r.server_cpu for r in rounds),
        )


async def run_round(
    bench: Bench, worker: WorkerProcess, users: list[str], per_second: float | None = None
) -> Round:
    """Start `users` on this worker's journey and wait until every run has closed."""
    if worker.kind == "cjo":
        await add_profiles(bench.sessions, users)
        start, business_line = cjo_starter(bench, worker, "bench-flow"), BUSINESS_LINE
        done = (
            "SELECT count(*) FROM enrolments WHERE journey = 'bench-flow'"
            " AND status = 'ended' AND user_id = ANY(:users)"
        )
    else:
        start, business_line = hand_starter(bench, worker, 1.0), HAND_BUSINESS_LINE
        done = "SELECT count(*) FROM grants WHERE business_line = :line AND user_id = ANY(:users)"
    worker_cpu, server_cpu = worker.cpu_seconds(), cpu_seconds(bench.server_pid)
    started = await start_all(start, users, per_second)
    await until(lambda: bench.count(done, users=users, line=business_line), len(users), "done")
    end = await last_close(bench.client, started.workflow_ids)
    worker_cpu, server_cpu = (
        worker.cpu_seconds() - worker_cpu,
        cpu_seconds(bench.server_pid) - server_cpu,
    )
    sends = await bench.rows(
        "SELECT user_id, extract(epoch FROM created_at) FROM messages"
        " WHERE business_line = :line AND user_id = ANY(:users)",
        line=business_line,
        users=users,
    )
    latencies = [float(str(at)) - started.at[str(user)] for user, at in sends]
    assert len(latencies) == len(users), "a run sent nothing"
    rate = len(users) / (end - min(started.at.values()))
    return Round(len(users), rate, latencies, worker_cpu, server_cpu)


# What one run costs --------------------------------------------------------------------


async def history_profile(client: Client, workflow_id: str) -> str:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(EventType.Name(event.event_type) for event in history.events)
    markers = Counter(
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
    )
    size = sum(event.ByteSize() for event in history.events)
    return (
        f"{len(history.events)} events, {size / 1024:.1f} KiB; "
        f"workflow tasks {kinds['EVENT_TYPE_WORKFLOW_TASK_COMPLETED']}, "
        f"activities {kinds['EVENT_TYPE_ACTIVITY_TASK_SCHEDULED']}, "
        f"local activities {markers['core_local_activity']}, "
        f"patch markers {markers['core_patch']}, "
        f"timers {kinds['EVENT_TYPE_TIMER_STARTED']}, "
        f"signals {kinds['EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED']}"
    )


async def transactions(bench: Bench) -> int:
    """PostgreSQL transactions so far, less the ones this process made to look."""
    (row,) = await bench.rows(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    return int(str(row[0])) - bench.queries


async def transactions_per_run(bench: Bench, worker: WorkerProcess, users: list[str]) -> float:
    # Backends report their counts when idle for a while: let every worker connection do so.
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    before = await transactions(bench)
    await run_round(bench, worker, users)
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    return (await transactions(bench) - before) / len(users)


# The bench -----------------------------------------------------------------------------


def median(rounds: list[Round]) -> Round:
    return sorted(rounds, key=lambda r: r.users_per_second)[(len(rounds) - 1) // 2]


def rate_line(mine: Round, theirs: Round) -> str:
    return (
        f"CJO {mine.users_per_second:5.1f} users/s   "
        f"hand-written {theirs.users_per_second:5.1f} users/s   "
        f"ratio {mine.users_per_second / theirs.users_per_second:.2f}"
    )


def cost_line(round_: Round, transactions: float) -> str:
    return (
        f"worker CPU {round_.per_run_ms(round_.worker_cpu):5.1f} ms/run   "
        f"Temporal server CPU {round_.per_run_ms(round_.server_cpu):5.1f} ms/run   "
        f"PostgreSQL {transactions:4.1f} transactions/run"
    )


async def throughput(bench: Bench, users: int, rounds: int) -> None:
    cjo = WorkerProcess("cjo", bench.database_url, bench.address, bench.logs)
    hand = WorkerProcess("hand", bench.database_url, bench.address, bench.logs)
    try:
        # Warm both workers up (imports, sandbox, connection pools) before timing anything.
        for worker in (cjo, hand):
            await run_round(bench, worker, [f"warm-{n:03d}" for n in range(WARM_UP_USERS)])
        print(f"throughput: {users} users, send -> wait 1s -> grant, {rounds} rounds alternating")
        results: dict[str, list[Round]] = {"cjo": [], "hand": []}
        for number in range(rounds):
            for worker in (cjo, hand):
                batch = [f"r{number}-{n:05d}" for n in range(users)]
                results[worker.kind].append(await run_round(bench, worker, batch))
            print(f"  round {number + 1}: {rate_line(results['cjo'][-1], results['hand'][-1])}")
        mine, theirs = (median(results[kind]) for kind in ("cjo", "hand"))
        # Each round runs CJO and then the hand-written workflow back to back, so a round's
        # ratio compares the two under the same conditions; the machine's drift from round
        # to round (other load, the server's growing database) cancels out of it.
        paired = sorted(
            c.users_per_second / h.users_per_second
            for c, h in zip(results["cjo"], results["hand"], strict=True)
        )
        print(f"  medians: {rate_line(mine, theirs)}")
        print(
            f"  ratio, median of the rounds' paired ratios: {paired[(len(paired) - 1) // 2]:.2f}"
            f"   (range {paired[0]:.2f}-{paired[-1]:.2f}; target >= 0.85)"
        )
        print("what a run costs (CPU over all rounds; transactions from a batch of their own):")
        cost_users = [f"cost-{n:04d}" for n in range(COST_USERS)]
        worker_ms = {}
        for kind, label, worker in (("cjo", "CJO", cjo), ("hand", "hand-written", hand)):
            total = Round.combined(results[kind])
            worker_ms[kind] = total.per_run_ms(total.worker_cpu)
            per_run = await transactions_per_run(bench, worker, cost_users)
            print(f"  {label:12}  {cost_line(total, per_run)}")
        bound = worker_ms["hand"] / worker_ms["cjo"]
        print(
            "  a worker runs Python on one core at a time (the GIL): where workers, not the"
            f" server, are the limit, CJO / hand-written = {bound:.2f}"
        )
        flow = bench.plans["bench-flow"]
        history = await history_profile(bench.client, workflow_id_for(flow, "r0-00000", None))
        print(f"  CJO history           {history}")
        print(f"  hand-written history  {await history_profile(bench.client, 'hand/r0-00000')}")
        print(f"start-to-first-send latency, bursts of {users} (all rounds):")
        for kind, label in (("cjo", "CJO"), ("hand", "hand-written")):
            print(f"  {label:12}  {latency_line(Round.combined(results[kind]).latencies)}")
        paced = [f"paced-{n:04d}" for n in range(PACED_USERS)]
        print(f"start-to-first-send latency, {PACED_USERS} users at {PACED_PER_SECOND:.0f}/s:")
        for label, worker in (("CJO", cjo), ("hand-written", hand)):
            calm = await run_round(bench, worker, paced, PACED_PER_SECOND)
            print(f"  {label:12}  {latency_line(calm.latencies)}")
    finally:
        hand.stop()
        cjo.stop()


async def parked(bench: Bench, count: int) -> None:
    users = [f"p{n:06d}" for n in range(count)]
    await add_profiles(bench.sessions, users)
    worker = WorkerProcess("cjo", bench.database_url, bench.address, bench.logs)
    try:
        # Warm up first, so the figure is what parked users add, not the first run's imports.
        await run_round(bench, worker, [f"pwarm-{n:03d}" for n in range(WARM_UP_USERS)])
        before = worker.rss_mib()
        began = time.monotonic()
        await start_all(cjo_starter(bench, worker, "bench-parked"), users)
        parked_now = (
            "SELECT count(*) FROM enrolments WHERE journey = 'bench-parked'"
            " AND status = 'active' AND current_step = 'hold'"
        )
        await until(lambda: bench.count(parked_now), count, "parked")
        took = time.monotonic() - began
        after = worker.rss_mib()
        await asyncio.sleep(RSS_SETTLE_SECONDS)
        settled = worker.rss_mib()
        per_user = (settled - before) * 1024 / count
        print(f"parked: {count} users in a 30-day wait, all parked after {took:.0f}s")
        print(
            f"  CJO worker process RSS: before {before:.0f} MiB, all parked {after:.0f} MiB, "
            f"{RSS_SETTLE_SECONDS:.0f}s later {settled:.0f} MiB ({per_user:.1f} KiB per user)"
        )
        print(
            f"  (the SDK caches at most {MAX_CACHED_WORKFLOWS} runs per worker; the rest are "
            "evicted and replayed when their timer fires, so the cache bounds this figure)"
        )
        print(f"  Temporal dev server RSS: {rss_mib(bench.server_pid):.0f} MiB")
    finally:
        worker.stop()


async def main(users: int, parked_users: int, rounds: int) -> None:
    print(f"load average before the bench: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    async with embedded_stack() as bench:
        await throughput(bench, users, rounds)
        if parked_users:
            await parked(bench, parked_users)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        # CJO_BENCH_PROFILE=<dir>: each worker writes a cProfile of itself there on exit.
        profile_dir = os.environ.get("CJO_BENCH_PROFILE")
        if profile_dir:
            import cProfile

            with cProfile.Profile() as profiler:
                asyncio.run(serve(*sys.argv[2:6]))
            profiler.dump_stats(Path(profile_dir) / f"worker-{sys.argv[2]}.prof")
        else:
            asyncio.run(serve(*sys.argv[2:6]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--parked", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.users, options.parked, options.rounds))
