"""A CJO worker in a process of its own, for test_restart.py to kill and replace.

    python tests/workflows/_restart_worker.py DATABASE_URL TEMPORAL_ADDRESS TASK_QUEUE

Builds the production worker (`cjo.worker.build_worker`, default tuning) against the given
database and Temporal server and runs it until SIGTERM/SIGINT, or until it is SIGKILLed,
which is the point. It prints one line once it polls, so the test knows it is up.
"""

from __future__ import annotations

import asyncio
import sys

from cjo.runtime.settings import Settings
from cjo.runtime.temporal import connect
from cjo.store.db import make_engine, make_sessions
from cjo.worker import build_worker, run_until_signalled

READY_LINE = "worker ready"


async def serve(database_url: str, address: str, task_queue: str) -> None:
    engine = make_engine(database_url)
    try:
        client = await connect(Settings(), address)
        worker = build_worker(client, make_sessions(engine), task_queue=task_queue)
        print(READY_LINE, flush=True)  # noqa: T201 - the parent process reads it
        await run_until_signalled(worker)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))
