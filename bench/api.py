"""How fast the API takes events in, against a bare COPY, and how soon a waiting run has them.

Brings up its own embedded PostgreSQL and Temporal dev server (a temporary directory, free
ports; nothing of a developer's stack is touched), the API in a process of its own
(uvicorn, `cjo.api.create_app`, real HTTP on 127.0.0.1, its default pool and settings but
the rate limit, raised so that it does not throttle the bench) and a CJO worker in
another. The client sends pre-encoded bodies with an operator's API key.

- Ingestion: N events of N distinct users (names no journey listens to), unique ids, in
  batches of 500 through `POST /v1/events` by S concurrent senders over keep-alive
  connections. Counted: the events of 202 answers only (a 202 is sent once the batch is
  committed to the `events` table: durably stored); events/s from the first request to the
  last 202. The events are routed after each answer, in the API process, as always (here
  they start and reach nothing, but each batch's routing still looks up campaigns, profiles
  and runs). The `events` table is emptied before, after a warm-up of a few batches.
- Baseline: the same N rows, emptied table again, loaded by one bare `COPY events (...)
  FROM STDIN` through psycopg in one transaction, rows/s from connecting to the commit; and
  the ratio API / COPY (target >= 0.1).
- Lag: K users are parked in `bench-await` (bench/api.yaml: entered by an event sent
  through the API, then a `wait_for` of `bench_ping`); once every run waits, each user's
  `bench_ping` is sent through the API, in batches of 500, back to back (a burst), then
  for another M users paced, in batches of 50 twice a second. Measured per event: from the
  moment the sender has the 202 of its batch to the moment the run's wait ended with that
  event: `step_log.at` of the wait step with outcome `event`, which is the workflow's clock
  (`workflow.now()`, the Temporal server's time) of the workflow task that took the
  signal and ended the wait. Client, server and database share the host's clock. So the lag
  is: routing (the API's background task, after the answer) + the signal into Temporal + the
  worker picking the workflow task up. p50, p99 and max are printed.

    .venv/bin/python bench/api.py [--events N] [--senders S] [--lag-users K] [--paced-users M]

CJO_BENCH_PROFILE=<dir>: the API process writes a cProfile of itself there (api.prof).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _support import latency_line, stop_process  # beside this script
from sqlalchemy import text

import cjo.store.schema  # noqa: F401  (registers every table)
from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import ProfileActivities, ProfileInput, UpsertProfilesInput
from cjo.activities.runs.campaigns import CampaignActivities, SetCampaignStateInput
from cjo.control.principals import ApiKeys, CreateApiKeyInput
from cjo.control.resources import ResourceActivities
from cjo.runtime.settings import Settings
from cjo.runtime.stack import (
    free_port,
    start_postgres,
    start_temporal,
    stop_postgres,
    stop_temporal,
)
from cjo.runtime.temporal import connect
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade
from cjo.worker import build_worker, run_until_signalled

BENCH = Path(__file__).resolve().parent
BUNDLE = BENCH / "api.yaml"
BUSINESS_LINE = "bench-api"
JOURNEY = "bench-await"
WAIT_STEP = "await_ping"
BATCH = 500
PACED_BATCH = 50
PACED_PER_SECOND = 2.0  # batches a second: 100 events/s, well below what the API takes
WARM_UP_BATCHES = 6
TARGET = 0.1
READY_LINE = "worker ready"
POLL_SECONDS = 0.2
PROGRESS_SECONDS = 15.0
WAIT_LIMIT_SECONDS = 600.0
PROFILE_PAGE = 1000
# The API's own limit is per principal and per minute: far above what the bench sends, so
# that the figures are the API's, not the limiter's.
RATE_LIMIT = 10_000_000


# The worker process --------------------------------------------------------------------


async def serve(database_url: str, address: str, task_queue: str) -> None:
    """`--worker`: one CJO worker, as `cjo worker` makes it, run until SIGTERM."""
    engine = make_engine(database_url, pre_ping=False)
    client = await connect(Settings(), address)
    worker = build_worker(client, make_sessions(engine), task_queue=task_queue)
    print(READY_LINE, flush=True)
    try:
        await run_until_signalled(worker)
    finally:
        await engine.dispose()


class Process:
    """A child process, stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=sink, text=True, env=env
            )

    def stop(self) -> None:
        stop_process(self.process)


def start_worker(bench: Bench) -> Process:
    command = [sys.executable, __file__, "--worker", bench.database_url, bench.address]
    worker = Process([*command, bench.task_queue], bench.home / "worker.log")
    assert worker.process.stdout is not None
    if worker.process.stdout.readline().strip() != READY_LINE:
        raise RuntimeError(f"the worker did not start; see {bench.home / 'worker.log'}")
    return worker


async def start_api(bench: Bench) -> Process:
    env = {
        **os.environ,
        "CJO_HOME": str(bench.settings.home),
        "CJO_DATABASE_URL": bench.database_url,
        "CJO_TEMPORAL_ADDRESS": bench.address,
        "CJO_TASK_QUEUE": bench.task_queue,
        "CJO_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "cjo.api:create_app"]
    profile_dir = os.environ.get("CJO_BENCH_PROFILE")
    if profile_dir:
        # The API process writes a cProfile of itself there when it stops.
        profile = str(Path(profile_dir).resolve() / "api.prof")
        command[1:1] = ["-m", "cProfile", "-o", profile]
    command += ["--host", "127.0.0.1", "--port", str(bench.api_port)]
    command += ["--log-level", "warning", "--no-access-log"]
    api = Process(command, bench.home / "api.log", env)
    async with httpx.AsyncClient(base_url=bench.api_url) as http:
        for _ in range(600):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return api
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    api.stop()
    raise RuntimeError(f"the API did not become ready; see {bench.home / 'api.log'}")


# The stack ---------------------------------------------------------------------------


@dataclass
class Bench:
    home: Path
    database_url: str
    settings: Settings
    address: str
    sessions: SessionFactory
    task_queue: str
    api_port: int
    key: str = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def libpq_url(self) -> str:
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    async def count(self, sql: str, **params: object) -> int:
        async with self.sessions() as session:
            connection = await session.connection()
            return int((await connection.execute(text(sql), params)).scalar_one())

    async def execute(self, sql: str) -> None:
        async with self.sessions() as session, session.begin():
            await (await session.connection()).execute(text(sql))


@asynccontextmanager
async def embedded_stack() -> AsyncIterator[Bench]:
    home = Path(tempfile.mkdtemp(prefix="cjo-bench-api-"))
    settings = Settings(home=home / "cjo", temporal_port=free_port(), temporal_ui_port=free_port())
    pg_dir = home / "pg"
    engine = None
    try:
        database_url = await asyncio.to_thread(start_postgres, pg_dir)
        await asyncio.to_thread(upgrade, database_url)
        address = await asyncio.to_thread(start_temporal, settings)
        engine = make_engine(database_url, pool_size=5, max_overflow=5)
        sessions = make_sessions(engine)
        task_queue = f"bench-api-{uuid.uuid4().hex[:6]}"
        yield Bench(home, database_url, settings, address, sessions, task_queue, free_port())
    finally:
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(stop_temporal, settings)
        await asyncio.to_thread(stop_postgres, pg_dir)
        shutil.rmtree(home, ignore_errors=True)


async def prepare(bench: Bench) -> None:
    """The journey published and its campaign running (set as the API's review would leave
    it: approved by another principal, then running), and an operator's key."""
    resources = ResourceActivities(bench.sessions, default_registry())
    outcome = await resources.apply(BUNDLE.read_text(encoding="utf-8"))
    if not outcome.valid:
        raise RuntimeError([d.format_text() for d in outcome.diagnostics])
    campaigns = CampaignActivities(bench.sessions)
    campaign = await campaigns.create(journey=JOURNEY, business_line=BUSINESS_LINE)
    now = datetime.now(UTC)
    await campaigns.submit(campaign.id, by="bench", audience_size=0, approvals_required=1, at=now)
    await campaigns.approve(campaign.id, by="bench-checker", at=now)
    await campaigns.set_state(
        SetCampaignStateInput(campaign_id=campaign.id, state="running", at=now)
    )
    created = await ApiKeys(bench.sessions).create(
        CreateApiKeyInput(name="bench", role="operator", business_lines=["*"], created_by="bench")
    )
    bench.key = created.key


async def add_profiles(sessions: SessionFactory, user_ids: list[str]) -> None:
    profiles = ProfileActivities(sessions)
    for first in range(0, len(user_ids), PROFILE_PAGE):
        await profiles.upsert_profiles(
            UpsertProfilesInput(
                profiles=[
                    ProfileInput(id=user_id, name="李雷")
                    for user_id in user_ids[first : first + PROFILE_PAGE]
                ],
                at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )


# Events ------------------------------------------------------------------------------


def event_rows(prefix: str, users: list[str], name: str) -> list[dict[str, Any]]:
    """One event per user, each with an id of its own and a few props, as a core system's."""
    at = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "id": f"{prefix}-{n:07d}",
            "user_id": user,
            "name": name,
            "props": {"amount": 100 + n % 9000 / 100, "channel": "app", "merchant": f"m-{n % 977}"},
            "ts": (at - timedelta(seconds=n % 3600)).isoformat(),
        }
        for n, user in enumerate(users)
    ]


def bodies(rows: list[dict[str, Any]], size: int) -> list[tuple[list[str], bytes]]:
    """The batches as sent: each one's users and its body, encoded before any timing."""
    return [
        (
            [row["user_id"] for row in rows[first : first + size]],
            json.dumps({"events": rows[first : first + size]}).encode(),
        )
        for first in range(0, len(rows), size)
    ]


@dataclass
class Sent:
    accepted: int = 0
    refused: int = 0
    first_sent: float = 0.0
    last_accepted: float = 0.0


def client(bench: Bench, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=bench.api_url,
        headers={"X-API-Key": bench.key, "Content-Type": "application/json"},
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(120.0),
    )


async def post_all(
    http: httpx.AsyncClient,
    batches: list[tuple[list[str], bytes]],
    senders: int,
    accepted_at: dict[str, float] | None = None,
    per_second: float | None = None,
) -> Sent:
    """Send every batch, `senders` at a time (or paced); the 202s and when they came."""
    sent = Sent(first_sent=time.time())
    queue: asyncio.Queue[tuple[list[str], bytes]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def sender() -> None:
        while not queue.empty():
            users, body = queue.get_nowait()
            answer = await http.post("/v1/events", content=body)
            now = time.time()
            if answer.status_code != 202:
                sent.refused += len(users)
                print(f"    refused: {answer.status_code} {answer.text[:200]}", flush=True)
                continue
            sent.accepted += int(answer.json()["accepted"])
            sent.last_accepted = max(sent.last_accepted, now)
            if accepted_at is not None:
                accepted_at.update(dict.fromkeys(users, now))
            if per_second:
                await asyncio.sleep(1 / per_second)

    await asyncio.gather(*(sender() for _ in range(senders)))
    return sent


# The figures ---------------------------------------------------------------------------


async def ingestion(bench: Bench, events: int, senders: int) -> float:
    users = [f"in-{n:07d}" for n in range(events)]
    rows = event_rows("evt", users, "page_viewed")
    batches = bodies(rows, BATCH)
    warm_up = bodies(event_rows("warm", users[: WARM_UP_BATCHES * BATCH], "page_viewed"), BATCH)
    async with client(bench, senders) as http:
        await post_all(http, warm_up, senders)
        await asyncio.sleep(1.0)  # the warm-up's routing, done in the background
        await bench.execute("TRUNCATE events")
        sent = await post_all(http, batches, senders)
    took = sent.last_accepted - sent.first_sent
    api_rate = sent.accepted / took
    stored = await bench.count("SELECT count(*) FROM events")
    print(
        f"ingestion: {events} events in batches of {BATCH}, {senders} senders, "
        f"real HTTP (uvicorn, one API process)"
    )
    print(
        f"  POST /v1/events   {api_rate:9.0f} events/s   ({sent.accepted} accepted in {took:.1f}s,"
        f" {sent.refused} refused; {stored} rows stored)"
    )
    if sent.accepted != events or stored != events:
        raise RuntimeError(f"{sent.accepted} accepted and {stored} stored of {events}")
    copy_rate = await bare_copy(bench, rows)
    print(f"  bare COPY         {copy_rate:9.0f} rows/s     (the same rows, one COPY)")
    ratio = api_rate / copy_rate
    print(f"  ratio API / COPY  {ratio:9.2f}            (target >= {TARGET})")
    return ratio


async def bare_copy(bench: Bench, rows: list[dict[str, Any]]) -> float:
    await bench.execute("TRUNCATE events")
    began = time.time()
    async with await psycopg.AsyncConnection.connect(bench.libpq_url) as connection:
        async with connection.cursor() as cursor:
            async with cursor.copy(
                "COPY events (client_id, user_id, name, props, ts) FROM STDIN"
            ) as copy:
                for row in rows:
                    props = json.dumps(row["props"])
                    await copy.write_row((row["id"], row["user_id"], row["name"], props, row["ts"]))
        await connection.commit()
    took = time.time() - began
    stored = await bench.count("SELECT count(*) FROM events")
    if stored != len(rows):
        raise RuntimeError(f"COPY stored {stored} rows of {len(rows)}")
    return len(rows) / took


async def until(bench: Bench, sql: str, target: int, what: str, **params: object) -> None:
    began = last_report = time.monotonic()
    while (done := await bench.count(sql, **params)) < target:
        now = time.monotonic()
        if now - began > WAIT_LIMIT_SECONDS:
            raise RuntimeError(f"only {done}/{target} {what} after {WAIT_LIMIT_SECONDS:.0f}s")
        if now - last_report > PROGRESS_SECONDS:
            print(f"    ... {done}/{target} {what}", flush=True)
            last_report = now
        await asyncio.sleep(POLL_SECONDS)


async def lag(bench: Bench, burst_users: int, paced_users: int) -> None:
    users = [f"lag-{n:06d}" for n in range(burst_users + paced_users)]
    await add_profiles(bench.sessions, users)
    began = time.monotonic()
    async with client(bench, 1) as http:
        await post_all(http, bodies(event_rows("enter", users, "bench_entered"), BATCH), 1)
        waiting = (
            "SELECT count(*) FROM enrolments WHERE journey = :journey AND status = 'active'"
            " AND current_step = :step"
        )
        await until(bench, waiting, len(users), "waiting", journey=JOURNEY, step=WAIT_STEP)
        print(
            f"lag: {len(users)} users parked in a wait_for through the API "
            f"in {time.monotonic() - began:.0f}s"
        )
        burst, paced = users[:burst_users], users[burst_users:]
        for label, group, size, pace in (
            (f"burst, batches of {BATCH} back to back", burst, BATCH, None),
            (
                f"paced, batches of {PACED_BATCH} at {PACED_PER_SECOND * PACED_BATCH:.0f} events/s",
                paced,
                PACED_BATCH,
                PACED_PER_SECOND,
            ),
        ):
            if not group:
                continue
            accepted_at: dict[str, float] = {}
            pings = bodies(event_rows(f"ping-{label[:5]}", group, "bench_ping"), size)
            await post_all(http, pings, 1, accepted_at, pace)
            ended = (
                "SELECT count(*) FROM step_log WHERE step_id = :step AND outcome = 'event'"
                " AND user_id = ANY(:users)"
            )
            await until(bench, ended, len(group), "waits ended", step=WAIT_STEP, users=group)
            lags = await lags_of(bench, group, accepted_at)
            print(f"  {len(group):5} users, {label}: {latency_line(lags)}")


async def lags_of(bench: Bench, users: list[str], accepted_at: dict[str, float]) -> list[float]:
    async with bench.sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text(
                "SELECT user_id, extract(epoch FROM at) FROM step_log"
                " WHERE step_id = :step AND outcome = 'event' AND user_id = ANY(:users)"
            ),
            {"step": WAIT_STEP, "users": users},
        )
        return [float(at) - accepted_at[str(user)] for user, at in rows]


async def main(events: int, senders: int, burst_users: int, paced_users: int) -> None:
    print(f"load average before the bench: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    async with embedded_stack() as bench:
        await prepare(bench)
        worker = start_worker(bench)
        try:
            api = await start_api(bench)
            try:
                await ingestion(bench, events, senders)
                await lag(bench, burst_users, paced_users)
            finally:
                api.stop()
        finally:
            worker.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(serve(*sys.argv[2:5]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--lag-users", type=int, default=2_000)
    parser.add_argument("--paced-users", type=int, default=500)
    options = parser.parse_args()
    asyncio.run(main(options.events, options.senders, options.lag_users, options.paced_users))
