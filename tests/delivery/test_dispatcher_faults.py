"""Faults: a dispatcher killed mid-batch, a provider down for a while, a provider saying 429.

Each ends with the receiver's count: every message accepted under its own idempotency
key (0 lost), none accepted twice (0 duplicates, as far as the provider can tell).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import text

from cjo.delivery.dispatcher import Dispatcher
from cjo.store.db import SessionFactory
from tests.delivery.support import (
    FAST,
    GIVE_UP_SECONDS,
    SECRET,
    http_provider,
    messages,
    none_pending,
    put_messages,
    run_until,
    settings,
)
from tests.receivers import Answer, HttpReceiver

READY = "dispatcher for the outbox"


def _assert_each_accepted_once(receiver: HttpReceiver, ids: list[str]) -> None:
    assert receiver.accepted() == set(ids)  # 0 lost
    stats = receiver.stats()
    assert stats["distinct_keys"] == len(ids)  # one key per message, no stranger
    assert stats["bad_signatures"] == 0
    # Requests beyond the first accepted one for a key were answered as repeats: the
    # provider took each message once.
    assert stats["accepted"] == len(ids)


async def _leased(sessions: SessionFactory) -> int:
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text("SELECT count(*) FROM messages WHERE status = 'pending' AND lease_until > now()")
        )
        return int(rows.scalar_one())


async def test_a_dispatcher_killed_mid_batch_loses_and_repeats_nothing(
    sessions: SessionFactory, database_url: str, temporal_address: str, tmp_path: Path
) -> None:
    batch, count = 25, 600
    with HttpReceiver(secret=SECRET, delay=0.02) as receiver:
        provider = http_provider(receiver.url).model_dump(mode="json")
        provider["secret"] = SECRET
        env = {
            **os.environ,
            "CJO_HOME": str(tmp_path / "home"),
            "CJO_DATABASE_URL": database_url,
            "CJO_TEMPORAL_ADDRESS": temporal_address,
            "CJO_PROVIDERS": json.dumps({"*": {"sms": provider}}),
            "CJO_DISPATCHER_BATCH_SIZE": str(batch),
            "CJO_DISPATCHER_CONCURRENCY": "4",
            "CJO_DISPATCHER_POLL_SECONDS": "0.05",
            # The killed one's claims come back to the outbox this long after it died.
            "CJO_DISPATCHER_LEASE_SECONDS": "2",
            "CJO_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-c", "from cjo.cli.main import main; main()", "dispatcher"]
        logs = [(tmp_path / f"dispatcher-{n}.log").open("wb") for n in (1, 2)]
        doomed, survivor = [
            await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=log
            )
            for log in logs
        ]
        try:
            for process in (doomed, survivor):
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), GIVE_UP_SECONDS)
                assert line.decode().startswith(READY), line
            ids = await put_messages(sessions, count)

            # Both at work: more rows leased than the survivor's two lanes can hold, so
            # the doomed one holds a batch it has partly delivered.
            give_up = time.monotonic() + GIVE_UP_SECONDS
            while not (await _leased(sessions) > 2 * batch and len(receiver.requests) > 50):
                assert time.monotonic() < give_up, "the dispatchers never got going"
                await asyncio.sleep(0.005)
            doomed.send_signal(signal.SIGKILL)
            assert await doomed.wait() == -signal.SIGKILL

            while not await none_pending(sessions):
                assert time.monotonic() < give_up, "the outbox never emptied"
                assert survivor.returncode is None, "the survivor died"
                await asyncio.sleep(0.05)
            survivor.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(survivor.wait(), GIVE_UP_SECONDS) == 0
        finally:
            for process in (doomed, survivor):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            for log in logs:
                log.close()

        _assert_each_accepted_once(receiver, ids)
    rows = await messages(sessions)
    assert {row.status for row in rows.values()} == {"sent"}
    # The killed dispatcher's claims were taken again after their lease lapsed.
    assert max(row.attempts for row in rows.values()) == 2
    async with sessions() as session:
        connection = await session.connection()
        receipts = await connection.execute(
            text("SELECT count(*), count(DISTINCT message_id) FROM delivery_receipts")
        )
        assert tuple(receipts.one()) == (count, count)


async def test_a_provider_down_for_a_while_backs_off_opens_the_breaker_and_recovers(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    ids = await put_messages(sessions, 10)
    receiver.fail_first(6, status=500)
    # One delivery at a time, so the order of events is certain.
    config = settings({"*": {"sms": http_provider(receiver.url)}}, dispatcher_concurrency=1)
    dispatcher = Dispatcher(sessions, config)

    await run_until(dispatcher, lambda: none_pending(sessions))
    await dispatcher.aclose()

    _assert_each_accepted_once(receiver, ids)
    requests = receiver.requests
    assert [r.status for r in requests[:7]] == [500] * 6 + [200]
    gate = dispatcher.gate("retail", "sms")
    assert gate is not None
    transitions = list(gate.breaker.transitions)
    # Three failures open it; each trial after the reset fails and re-opens it, until
    # the first success (the seventh request) closes it.
    assert [t.state for t in transitions] == ["open", "half_open"] * 4 + ["closed"]
    for opened, trial in zip(transitions[0::2], transitions[1::2], strict=False):
        assert trial.at - opened.at >= FAST["breaker_reset_seconds"]
        # Nothing reached the provider while the breaker was open.
        assert not [r for r in requests if opened.at < r.at < trial.at]
    # A message's attempts come further and further apart (exponential backoff with
    # jitter: at least half the doubling delay each time).
    by_key: dict[str, list[float]] = {}
    for request in requests:
        by_key.setdefault(request.key or "", []).append(request.at)
    retried = [times for times in by_key.values() if len(times) > 1]
    assert retried
    for times in retried:
        for attempt, (before, after) in enumerate(zip(times, times[1:], strict=False), 1):
            doubling = min(
                FAST["backoff_max_seconds"], FAST["backoff_initial_seconds"] * 2 ** (attempt - 1)
            )
            assert after - before >= doubling / 2
    # Messages put back while the breaker was open spent no attempt on it.
    rows = await messages(sessions)
    assert sum(row.attempts for row in rows.values()) == len(requests)


async def test_a_429_holds_the_provider_for_its_retry_after(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    ids = await put_messages(sessions, 5)
    receiver.script(Answer(429, {"Retry-After": "1"}, b'{"error":"slow down"}'))
    config = settings({"*": {"sms": http_provider(receiver.url)}}, dispatcher_concurrency=1)
    dispatcher = Dispatcher(sessions, config)

    await run_until(dispatcher, lambda: none_pending(sessions))
    await dispatcher.aclose()

    _assert_each_accepted_once(receiver, ids)
    throttled, *rest = receiver.requests
    assert throttled.status == 429 and len(rest) == 5
    # Nothing more went to the provider until the second it asked for had passed.
    assert min(r.at for r in rest) - throttled.at >= 1.0
    rows = await messages(sessions)
    assert rows[throttled.key or ""].attempts == 2
    assert sum(row.attempts for row in rows.values()) == 6
    # Being told to slow down says nothing about the provider's health.
    gate = dispatcher.gate("retail", "sms")
    assert gate is not None and list(gate.breaker.transitions) == []
