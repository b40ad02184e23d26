"""Everything on one machine: the embedded stack, a worker and the API, in one process.

`cjo dev` runs these in the foreground until Ctrl-C; `make demo` drives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from cjo.api import create_app
from cjo.control.principals import ApiKeys, CreateApiKeyInput
from cjo.runtime import stack
from cjo.runtime.settings import Settings
from cjo.runtime.temporal import connect
from cjo.store import migrate
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.worker import WorkerTuning, build_dispatcher, build_worker, dispatching


@dataclass
class Services:
    info: stack.StackInfo
    engine: AsyncEngine
    sessions: SessionFactory
    client: Client
    api_url: str
    started_stack: list[str]
    # An admin key for every business line, for whoever drives this stack locally.
    admin_key: str


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: our process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _running_before(settings: Settings) -> set[str]:
    running = set()
    if settings.database_url or (settings.pg_data / "postmaster.pid").exists():
        running.add("postgres")
    with socket.socket() as probe:
        probe.settimeout(0.3)
        if (
            settings.temporal_address
            or probe.connect_ex(("127.0.0.1", settings.temporal_port)) == 0
        ):
            running.add("temporal")
    return running


@contextlib.asynccontextmanager
async def services(
    settings: Settings, *, api_port: int = 8000, tuning: WorkerTuning | None = None
) -> AsyncIterator[Services]:
    """Start (or reuse) the stack, then a worker (with the outbox dispatcher, unless
    `dispatcher_in_worker` is off) and the API; stop them on the way out."""
    before = _running_before(settings)
    info = await asyncio.to_thread(stack.start, settings)
    started = sorted({"postgres", "temporal"} - before)
    await asyncio.to_thread(migrate.upgrade, info.database_url)
    engine = make_engine(info.database_url, pool_size=settings.database_pool_size)
    sessions = make_sessions(engine)
    admin_key = await dev_admin_key(settings, sessions)
    client = await connect(settings, info.temporal_address)
    worker = build_worker(client, sessions, task_queue=settings.task_queue, tuning=tuning)
    worker_task = asyncio.create_task(worker.run())
    app = create_app(sessions=sessions, temporal=client, task_queue=settings.task_queue)
    server = _QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", lifespan="on")
    )
    api_task = asyncio.create_task(server.serve())
    while not server.started:
        if api_task.done():
            await api_task  # re-raises why it could not start (a port in use, say)
        await asyncio.sleep(0.05)
    dispatcher = (
        build_dispatcher(settings, sessions, client) if settings.dispatcher_in_worker else None
    )
    try:
        async with dispatching(dispatcher):
            yield Services(
                info, engine, sessions, client, f"http://127.0.0.1:{api_port}", started, admin_key
            )
    finally:
        server.should_exit = True
        await api_task
        await worker.shutdown()
        await worker_task
        await engine.dispose()


async def dev_admin_key(settings: Settings, sessions: SessionFactory) -> str:
    """The local admin key kept under the stack's home; a new one when it no longer works."""
    path = settings.home / "dev-admin-key"
    keys = ApiKeys(sessions)
    if path.exists():
        kept = path.read_text(encoding="utf-8").strip()
        if await keys.authenticate(kept) is not None:
            return kept
    minted = await keys.create(
        CreateApiKeyInput(name="cjo dev", role="admin", business_lines=["*"], created_by="cjo dev")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(minted.key + "\n", encoding="utf-8")
    return minted.key


async def wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run_dev(settings: Settings, *, api_port: int, echo: Any) -> None:
    async with services(settings, api_port=api_port) as running:
        echo(f"API          {running.api_url}  (docs: {running.api_url}/docs)")
        echo(f"Admin key    {running.admin_key}  (X-API-Key; kept in {settings.home})")
        ui = running.info.temporal_ui or f"external: {running.info.temporal_address}"
        echo(f"Temporal UI  {ui}")
        echo(f"PostgreSQL   {running.info.database_url.split('@')[-1]}")
        echo("Ctrl-C stops everything.")
        await wait_for_interrupt()
        echo("stopping ...")
    for name in await asyncio.to_thread(_stop_started, settings, running.started_stack):
        echo(f"stopped {name}")


def _stop_started(settings: Settings, started: list[str]) -> list[str]:
    """Stop the embedded servers this process started; leave ones that were running."""
    stopped = []
    if "temporal" in started and stack.stop_temporal(settings):
        stopped.append("temporal")
    if "postgres" in started and stack.stop_postgres(settings.pg_data):
        stopped.append("postgres")
    return stopped
