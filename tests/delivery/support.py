"""Outbox rows, provider settings and a way to run a dispatcher until the outbox says so."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select

from cjo.delivery.dispatcher import Dispatcher
from cjo.delivery.providers.base import OutgoingMessage
from cjo.runtime.settings import ProviderSettings, Settings
from cjo.store.db import SessionFactory
from cjo.store.schema import Message

SECRET = "provider-secret"
# Small waits everywhere, so fault tests take seconds.
FAST: dict[str, Any] = {
    "backoff_initial_seconds": 0.05,
    "backoff_max_seconds": 0.4,
    "breaker_failures": 3,
    "breaker_reset_seconds": 0.5,
    "max_attempts": 8,
    "rate_per_second": 10_000,
}
# A guard against a hung test, not a measure of speed.
GIVE_UP_SECONDS = 60.0


def http_provider(url: str, **changes: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "kind": "http",
        "url": url,
        "secret": SecretStr(SECRET),
        "timeout_seconds": 5.0,
        **FAST,
    }
    values.update(changes)
    return ProviderSettings(**values)


def settings(providers: dict[str, dict[str, ProviderSettings]], **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "providers": providers,
        "dispatcher_batch_size": 50,
        "dispatcher_poll_seconds": 0.02,
        "dispatcher_lease_seconds": 30.0,
        "dispatcher_concurrency": 8,
    }
    values.update(changes)
    return Settings(**values)


def outgoing(**changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "business_line": "retail",
        "channel": "sms",
        "user_id": "u-1",
        "address": "13800138000",
        "subject": None,
        "body": "【示例银行】您的卡已寄出。拒收请回复R",
        "html": None,
        "template": "card-welcome",
        "locale": "zh-CN",
        "marketing": True,
        "journey": "card-activation",
        "step_id": "welcome_sms",
        "attempt": 1,
    }
    values.update(changes)
    return OutgoingMessage(**values)


async def put_messages(
    sessions: SessionFactory, count: int, *, due_in: float = -1.0, **changes: Any
) -> list[str]:
    """`count` pending outbox rows, due `due_in` seconds from now (past by default)."""
    not_before = datetime.now(UTC) + timedelta(seconds=due_in)
    rows = []
    for number in range(count):
        message_id = uuid.uuid4().hex
        values: dict[str, Any] = {
            "id": message_id,
            "key": f"test/{message_id}",
            "business_line": "retail",
            "journey": "card-activation",
            "workflow_id": f"journey/retail/card-activation/u-{number}",
            "step_id": "welcome_sms",
            "user_id": f"u-{number}",
            "channel": "sms",
            "template": "card-welcome",
            "locale": "zh-CN",
            "marketing": False,
            "status": "pending",
            "address": f"1380013{number:04d}",
            "body": f"【示例银行】第{number}条：您的卡已寄出。",
            "attempts": 0,
            "not_before": not_before,
            "links": [],
        }
        values.update(changes)
        rows.append(values)
    async with sessions() as session, session.begin():
        await session.exec(pg_insert(Message), params=rows)
    return [row["id"] for row in rows]


async def messages(sessions: SessionFactory) -> dict[str, Message]:
    async with sessions() as session:
        return {row.id: row for row in (await session.exec(select(Message))).all()}


async def statuses(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text("SELECT status, count(*) FROM messages GROUP BY status")
        )
        return dict(rows.tuples())


async def none_pending(sessions: SessionFactory) -> bool:
    async with sessions() as session:
        rows = await session.exec(select(Message.id).where(col(Message.status) == "pending"))
        return rows.first() is None


async def run_until(
    dispatcher: Dispatcher,
    done: Callable[[], Awaitable[bool]],
    *,
    check_every: float = 0.05,
) -> None:
    """Run the dispatcher (all its lanes) until `done()`, then stop it gracefully."""
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    give_up = time.monotonic() + GIVE_UP_SECONDS
    try:
        while not await done():
            assert time.monotonic() < give_up, "the dispatcher never got there"
            assert not running.done(), "the dispatcher stopped by itself"
            await asyncio.sleep(check_every)
    finally:
        stop.set()
        await running
