"""How long a segment count takes through CJO's translator, against the same count by hand.

Starts its own embedded PostgreSQL in a temporary directory, migrates it, bulk-loads N
synthetic profiles (attrs, tags) and several events per profile with COPY, runs ANALYZE,
then times the segment

    all: [{attr: aum, gte: 50000}, {tag: payroll}, {performed: {event: login, within: 90d}}]

through `SegmentActivities.count` and as plain SQL written by hand, on the same engine,
alternating the two and taking medians. Target: CJO / hand-written <= 1.3x.

    .venv/bin/python bench/segments.py [--profiles N] [--events-per-profile K] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text

from cjo.activities.people.segments import CountSegmentInput, SegmentActivities
from cjo.runtime.stack import start_postgres, stop_postgres
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade

NOW = datetime(2026, 12, 28, 4, 0, tzinfo=UTC)
SEGMENT = {
    "match": {
        "all": [
            {"attr": "aum", "gte": 50000},
            {"tag": "payroll"},
            {"performed": {"event": "login", "within": "90d"}},
        ]
    }
}
# What an engineer who knows the data (every aum is a number) would write.
HAND_WRITTEN = """
SELECT count(*) FROM profiles p
WHERE (p.attrs ->> 'aum')::numeric >= 50000
  AND p.tags @> ARRAY['payroll']
  AND EXISTS (
    SELECT 1 FROM events e
    WHERE e.user_id = p.id AND e.name = 'login' AND e.ts >= :since AND e.ts <= :now
  )
"""
EVENT_NAMES = ["login"] * 4 + ["app_open"] * 3 + ["transfer"] * 2 + ["fund_purchase"]
TAGS = ["payroll", "vip", "student", "card", "mortgage"]
LIFECYCLES = ["new", "growing", "mature", "dormant", "churned"]
CHUNK_ROWS = 100_000


def _profile_rows(count: int, rng: random.Random) -> Iterator[str]:
    for number in range(count):
        attrs = f'{{"aum": {rng.randrange(0, 200_000)}, "segment": "s{rng.randrange(20)}"}}'
        if rng.random() < 0.1:
            attrs = '{"segment": "none"}'  # no aum at all
        tags = ",".join(tag for tag in TAGS if rng.random() < 0.25)
        day = NOW - timedelta(days=rng.randrange(3650))
        yield (
            f"u{number:08d}\tName {number}\t1380{number:07d}\tzh-CN\t"
            f"{day:%Y-%m-%d}T08:00:00+00\t{rng.choice(LIFECYCLES)}\t{{{tags}}}\t{attrs}\n"
        )


def _event_rows(count: int, profiles: int, rng: random.Random) -> Iterator[str]:
    days = [f"{NOW - timedelta(days=offset):%Y-%m-%d}" for offset in range(1, 366)]
    for number in range(count):
        name = rng.choice(EVENT_NAMES)
        props = f'{{"amount": {rng.randrange(10, 50_000)}}}' if name == "fund_purchase" else "{}"
        second = rng.randrange(86_400)
        ts = f"{rng.choice(days)} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00"
        yield f"e{number}\tu{rng.randrange(profiles):08d}\t{name}\t{props}\t{ts}\n"


def _copy(
    connection: psycopg.Connection, statement: str, rows: Iterator[str], total: int, what: str
) -> None:
    started = time.perf_counter()
    done = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        chunk: list[str] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK_ROWS:
                copy.write("".join(chunk))
                done += len(chunk)
                chunk.clear()
                if done % (CHUNK_ROWS * 10) == 0:
                    print(f"  {what}: {done:,}/{total:,} ({time.perf_counter() - started:.0f}s)")
        copy.write("".join(chunk))
    print(f"  {what}: {total:,} in {time.perf_counter() - started:.1f}s")


def load(url: str, profiles: int, events: int) -> None:
    """COPY the rows in with the secondary indexes dropped, then rebuild them as defined."""
    rng = random.Random(20261228)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '512MB'")
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename IN ('profiles', 'events')"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        _copy(
            connection,
            "COPY profiles (id, name, phone, locale, created_at, lifecycle, tags, attrs)"
            " FROM STDIN",
            _profile_rows(profiles, rng),
            profiles,
            "profiles",
        )
        _copy(
            connection,
            "COPY events (client_id, user_id, name, props, ts) FROM STDIN",
            _event_rows(events, profiles, rng),
            events,
            "events",
        )
        started = time.perf_counter()
        for _, definition in indexes:
            connection.execute(definition)
        connection.execute("VACUUM ANALYZE profiles")
        connection.execute("VACUUM ANALYZE events")
        print(f"  indexes and ANALYZE: {time.perf_counter() - started:.1f}s")


async def _timed(work: Callable[[], Awaitable[int]], samples: list[float]) -> int:
    started = time.perf_counter()
    result = await work()
    samples.append(time.perf_counter() - started)
    return result


async def measure(url: str, rounds: int) -> None:
    engine = make_engine(url, pool_size=2, max_overflow=0)
    sessions: SessionFactory = make_sessions(engine)
    segments = SegmentActivities(sessions)
    request = CountSegmentInput(
        segment="rich-payroll-active", segments={"rich-payroll-active": SEGMENT}, at=NOW
    )
    since = NOW - timedelta(days=90)

    async def through_cjo() -> int:
        return (await segments.count(request)).count

    async def by_hand() -> int:
        async with sessions() as session:
            connection = await session.connection()
            result = await connection.execute(text(HAND_WRITTEN), {"since": since, "now": NOW})
            return int(result.scalar_one())

    try:
        cjo_times: list[float] = []
        hand_times: list[float] = []
        # One untimed run of each warms the cache and the connection pool.
        counts = {await through_cjo(), await by_hand()}
        if len(counts) != 1:
            raise SystemExit(f"the two queries disagree: {sorted(counts)}")
        for round_number in range(rounds):
            pair = [(through_cjo, cjo_times), (by_hand, hand_times)]
            for work, samples in pair if round_number % 2 == 0 else reversed(pair):
                await _timed(work, samples)
        cjo, hand = statistics.median(cjo_times), statistics.median(hand_times)
        print(f"segment count = {counts.pop():,}; median of {rounds} alternating rounds")
        print(f"  hand-written SQL   {hand * 1000:9.1f} ms   1.00x")
        print(f"  CJO translator     {cjo * 1000:9.1f} ms   {cjo / hand:.2f}x  (target <= 1.30x)")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events-per-profile", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()
    # Progress lines should appear as they happen, also when the output is piped.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    data_dir = Path(tempfile.mkdtemp(prefix="cjo-bench-segments-"))
    try:
        print(f"starting PostgreSQL in {data_dir}")
        url = start_postgres(data_dir)
        upgrade(url)
        events = options.profiles * options.events_per_profile
        print(f"loading {options.profiles:,} profiles and {events:,} events")
        started = time.perf_counter()
        load(url.replace("postgresql+psycopg://", "postgresql://", 1), options.profiles, events)
        print(f"loaded in {time.perf_counter() - started:.0f}s")
        asyncio.run(measure(url, options.rounds))
    finally:
        stop_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
