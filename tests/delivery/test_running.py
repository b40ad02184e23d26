"""`cjo worker` delivers the outbox too, unless told not to; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from cjo.store.db import SessionFactory
from tests.delivery.support import (
    GIVE_UP_SECONDS,
    SECRET,
    http_provider,
    messages,
    none_pending,
    put_messages,
)
from tests.receivers import HttpReceiver


async def test_the_worker_runs_a_dispatcher_beside_it(
    sessions: SessionFactory, database_url: str, temporal_address: str, tmp_path: Path
) -> None:
    ids = await put_messages(sessions, 5)
    with HttpReceiver(secret=SECRET) as receiver:
        provider = http_provider(receiver.url).model_dump(mode="json") | {"secret": SECRET}
        env = {
            **os.environ,
            "CJO_HOME": str(tmp_path / "home"),
            "CJO_DATABASE_URL": database_url,
            "CJO_TEMPORAL_ADDRESS": temporal_address,
            "CJO_TASK_QUEUE": "test-worker-dispatches",
            "CJO_PROVIDERS": json.dumps({"*": {"sms": provider}}),
            "CJO_DISPATCHER_POLL_SECONDS": "0.05",
            "CJO_LOG_LEVEL": "WARNING",
        }
        with (tmp_path / "worker.log").open("wb") as log:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from cjo.cli.main import main; main()",
                "worker",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
            try:
                assert worker.stdout is not None
                line = await asyncio.wait_for(worker.stdout.readline(), GIVE_UP_SECONDS)
                assert line.decode().startswith("worker with a dispatcher on task queue"), line
                give_up = time.monotonic() + GIVE_UP_SECONDS
                while not await none_pending(sessions):
                    assert time.monotonic() < give_up, "the worker delivered nothing"
                    await asyncio.sleep(0.05)
                worker.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(worker.wait(), GIVE_UP_SECONDS) == 0
            finally:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()

        assert receiver.keys() == dict.fromkeys(ids, 1)
    assert {row.status for row in (await messages(sessions)).values()} == {"sent"}
