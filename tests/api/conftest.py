"""API tests: the app over the real database, with (`api`) or without (`db_api`) Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from cjo.api import create_app
from cjo.store.db import SessionFactory
from tests.workflows.conftest import client, env, task_queue  # noqa: F401

BASE_URL = "http://cjo.test"


@pytest.fixture
async def api(
    sessions: SessionFactory,
    client: Client,  # noqa: F811 - the fixtures imported above
    task_queue: str,  # noqa: F811
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole API: a real worker serves the campaigns and journeys it starts."""
    app = create_app(sessions=sessions, temporal=client, task_queue=task_queue)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
async def db_api(sessions: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a database and no Temporal: enough for resources and profiles."""
    app = create_app(sessions=sessions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http
