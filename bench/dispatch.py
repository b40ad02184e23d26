"""How fast the dispatcher empties the outbox, against a bare loop of httpx POSTs.

Brings up its own embedded PostgreSQL (a temporary directory) and the HTTP receiver of
the tests (`tests/receivers.py`) in a process of its own. Each round:

- fills the outbox with N pending sms messages (one INSERT ... SELECT), then runs the
  real `Dispatcher` (its default lanes, batch size and concurrency C) until no message is
  pending: messages/s, with every guarantee on (claims with leases, the outcome written
  per batch, a `sent` receipt per message, HMAC signatures, idempotency keys, the rate
  limit set high, the circuit breaker);
- POSTs the same N bodies with `Idempotency-Key`, C requests in flight, through the same
  httpx connections the provider uses (`ClientPool`: C keep-alive connections spread over
  clients of a few each): nothing else, no database, no signature.

Rounds alternate the two; the medians of each and the median of the rounds' ratios are
printed (target >= 0.7). The receiver's counts are checked after each dispatcher round:
N distinct keys, each accepted once, every signature valid. For scale, a last loop POSTs
through one `httpx.AsyncClient` holding all C connections, which httpx serves far slower
(its pool looks at every connection for every request).

    .venv/bin/python bench/dispatch.py [--messages N] [--concurrency C] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import text

from cjo.delivery.dispatcher import Dispatcher
from cjo.delivery.providers.base import OutgoingMessage
from cjo.delivery.providers.http import IDEMPOTENCY_HEADER, ClientPool, request_body
from cjo.runtime.log import configure_logging
from cjo.runtime.settings import ProviderSettings, Settings
from cjo.runtime.stack import free_port, start_postgres, stop_postgres
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
TARGET = 0.7
# How often the outbox is looked at for the end of a dispatcher round: often enough for a
# few percent of a round, seldom enough not to slow the dispatcher beside it.
POLL_SECONDS = 0.05

FILL = text(
    """
    INSERT INTO messages (id, key, business_line, journey, workflow_id, step_id, user_id,
                          channel, template, locale, marketing, status, address, body,
                          attempts, not_before)
    SELECT md5(:round || '/' || n), 'bench/' || :round || '/' || n, 'bench', 'bench-flow',
           'journey/bench/bench-flow/u' || n, 'send', 'u' || n, 'sms', 'bench-sms', 'zh-CN',
           false, 'pending', '1380013' || lpad(n::text, 4, '0'),
           '【示例银行】尊敬的客户' || n || '，您有 1,200 积分将于月底到期，'
           || '请登录手机银行兑换。拒收请回复R',
           0, now() - interval '1 second'
    FROM generate_series(1, :count) AS n
    """
)
ROUND_MESSAGES = text(
    """
    SELECT id, business_line, channel, user_id, address, subject, body, html, template,
           locale, marketing, journey, step_id, attempts AS attempt
    FROM messages WHERE key LIKE :prefix ORDER BY id
    """
)


class Receiver:
    """tests/receivers.py in a process of its own, so it does not share our interpreter."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.receivers", "--port", str(self.port)]
            + ["--secret", SECRET, "--accept-unsigned"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError("the receiver did not start")
        self.url = line.split()[1]

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(self.url + "_stats").json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def fill(sessions: SessionFactory, round_number: int, count: int) -> None:
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(FILL, {"round": round_number, "count": count})


async def pending(sessions: SessionFactory) -> bool:
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM messages WHERE status = 'pending')")
        )
        return bool(rows.scalar_one())


async def dispatcher_round(
    sessions: SessionFactory, settings: Settings, receiver: Receiver, number: int, count: int
) -> float:
    await fill(sessions, number, count)
    before = receiver.stats()
    dispatcher = Dispatcher(sessions, settings)
    stop = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(dispatcher.run(stop))
    while await pending(sessions):
        await asyncio.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    stop.set()
    await running
    await dispatcher.aclose()
    await check_round(sessions, receiver, before, number, count)
    return count / elapsed


async def check_round(
    sessions: SessionFactory,
    receiver: Receiver,
    before: dict[str, int],
    number: int,
    count: int,
) -> None:
    """The guarantees held: every message accepted once, signed, sent and receipted."""
    after = receiver.stats()
    delta = {key: after[key] - before.get(key, 0) for key in after}
    expected = {"distinct_keys": count, "accepted": count, "replays": 0}
    expected |= {"bad_signatures": 0, "unsigned": 0}
    wrong = {key: delta[key] for key, value in expected.items() if delta[key] != value}
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE m.status = 'sent'),"
                " (SELECT count(*) FROM delivery_receipts r JOIN messages x"
                "  ON x.id = r.message_id WHERE x.key LIKE :prefix AND r.status = 'sent')"
                " FROM messages m WHERE m.key LIKE :prefix"
            ),
            {"prefix": f"bench/{number}/%"},
        )
        sent, receipts = rows.one()
    if wrong or sent != count or receipts != count:
        raise SystemExit(f"round {number}: {wrong=}, {sent=}, {receipts=} of {count}")


async def round_bodies(sessions: SessionFactory, number: int) -> list[bytes]:
    """What the dispatcher POSTed in round `number`."""
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(ROUND_MESSAGES, {"prefix": f"bench/{number}/%"})
        return [request_body(OutgoingMessage(**row._asdict())) for row in rows]


async def bare_round(
    bodies: list[bytes], receiver: Receiver, label: str, concurrency: int, *, one_client: bool
) -> float:
    """The bodies POSTed by a plain loop, `concurrency` at a time."""
    slots = asyncio.Semaphore(concurrency)
    pool = ClientPool(concurrency, timeout=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    single = httpx.AsyncClient(limits=limits, timeout=10.0)

    async def post(index: int, body: bytes) -> None:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: f"{label}/{index}"}
        async with slots:
            if one_client:
                response = await single.post(receiver.url, content=body, headers=headers)
            else:
                async with pool.client() as client:
                    response = await client.post(receiver.url, content=body, headers=headers)
        response.raise_for_status()

    try:
        started = time.perf_counter()
        await asyncio.gather(*(post(index, body) for index, body in enumerate(bodies)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.aclose()
        await single.aclose()
    return len(bodies) / elapsed


async def main(count: int, concurrency: int, rounds: int) -> None:
    configure_logging("WARNING")
    home = Path(tempfile.mkdtemp(prefix="cjo-bench-dispatch-"))
    pg_dir = home / "pg"
    receiver = None
    engine = None
    try:
        database_url = await asyncio.to_thread(start_postgres, pg_dir)
        await asyncio.to_thread(upgrade, database_url)
        engine = make_engine(database_url, pool_size=10, max_overflow=10)
        sessions = make_sessions(engine)
        receiver = Receiver()
        provider = ProviderSettings(
            kind="http", url=receiver.url, secret=SecretStr(SECRET), rate_per_second=1_000_000
        )
        settings = Settings(
            home=home / "cjo",
            providers={"*": {"sms": provider}},
            dispatcher_concurrency=concurrency,
        )
        print(
            f"{count:,} messages a round, {concurrency} in flight, batches of"
            f" {settings.dispatcher_batch_size}, {rounds} rounds; receiver {receiver.url}"
        )
        # A warm-up round of each: connections, caches, the planner.
        await dispatcher_round(sessions, settings, receiver, 0, min(count, 1000))
        warm_up = await round_bodies(sessions, 0)
        await bare_round(warm_up, receiver, "bare/0", concurrency, one_client=False)
        dispatched: list[float] = []
        bare: list[float] = []
        for number in range(1, rounds + 1):
            dispatched.append(await dispatcher_round(sessions, settings, receiver, number, count))
            bodies = await round_bodies(sessions, number)
            label = f"bare/{number}"
            bare.append(await bare_round(bodies, receiver, label, concurrency, one_client=False))
            print(
                f"  round {number}: dispatcher {dispatched[-1]:,.0f} msg/s,"
                f" bare httpx loop {bare[-1]:,.0f} msg/s,"
                f" ratio {dispatched[-1] / bare[-1]:.2f}"
            )
        one_client = await bare_round(bodies, receiver, "one-client", concurrency, one_client=True)
        ratios = [d / b for d, b in zip(dispatched, bare, strict=True)]
        ratio = statistics.median(ratios)
        print(
            f"dispatcher {statistics.median(dispatched):,.0f} msg/s,"
            f" bare httpx loop {statistics.median(bare):,.0f} msg/s (medians);"
            f" one AsyncClient with {concurrency} connections: {one_client:,.0f} msg/s"
        )
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"ratio dispatcher / bare = {ratio:.2f} ({verdict} the target >= {TARGET})")
        figures = {"dispatcher": dispatched, "bare": bare, "ratios": ratios, "ratio": ratio}
        print(json.dumps(figures | {"one_client": one_client}))
    finally:
        if receiver is not None:
            receiver.stop()
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(stop_postgres, pg_dir)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.messages, options.concurrency, options.rounds))
