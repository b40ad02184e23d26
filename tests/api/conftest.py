"""API tests: the app over the real database, with (`api`) or without (`db_api`) Temporal.

Every client here authenticates with a real API key minted in the test's database
(`api` and `db_api` are admins of every business line; `full_app.client(...)` and
`db_app.client(...)` give other roles and lines), and counts the mutating calls it makes.
When the test ends, the audit log must hold exactly one row per such call: the audit's
completeness is checked after every API test, so over the whole session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from cjo.api import create_app
from cjo.api.audit import MUTATING_METHODS
from cjo.api.auth import guarded
from cjo.control.principals import ApiKeys, CreateApiKeyInput, Role
from cjo.runtime.settings import get_settings
from cjo.store.db import SessionFactory
from tests.api.support import count
from tests.workflows.conftest import client, env, task_queue  # noqa: F401

BASE_URL = "http://cjo.test"
# Statuses of calls that write no audit row by design (no principal, or refused first).
UNAUDITED_STATUSES = frozenset({401, 429})


class AuditLedger:
    """The audited calls one test made, through every client of every app it used."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self.calls: list[str] = []

    async def count(self, response: httpx.Response) -> None:
        request = response.request
        if (
            request.method in MUTATING_METHODS
            and guarded(request.url.path)
            and response.status_code not in UNAUDITED_STATUSES
        ):
            self.calls.append(f"{request.method} {request.url.path} {response.status_code}")

    async def check_complete(self) -> None:
        rows = await count(self.sessions, "audit_log")
        assert rows == len(self.calls), (
            f"{len(self.calls)} audited calls made, {rows} audit rows: {self.calls[:10]}"
        )


class ApiClients:
    """Clients of one app, each holding a real key of its own, all counting audited calls."""

    def __init__(
        self, app: FastAPI, sessions: SessionFactory, stack: AsyncExitStack, ledger: AuditLedger
    ) -> None:
        self.app = app
        self.sessions = sessions
        self._stack = stack
        self.ledger = ledger

    async def mint(
        self, role: Role = "admin", business_lines: Iterable[str] = ("*",), name: str = ""
    ) -> str:
        lines = list(business_lines)
        created = await ApiKeys(self.sessions).create(
            CreateApiKeyInput(
                name=name or f"test {role} {','.join(lines)}",
                role=role,
                business_lines=lines,
                created_by="tests",
            )
        )
        return created.key

    async def client(
        self,
        role: Role = "admin",
        business_lines: Iterable[str] = ("*",),
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        """A client with a new key of `role` over `business_lines`, or with `headers` only
        (no key is minted then: for anonymous calls and hand-made credentials)."""
        if headers is None:
            headers = {"X-API-Key": await self.mint(role, business_lines)}
        http = httpx.AsyncClient(
            # As a server would: an unexpected error is the 500 answer, not raised here.
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url=BASE_URL,
            headers=headers,
            event_hooks={"response": [self.ledger.count]},
        )
        return await self._stack.enter_async_context(http)


@pytest.fixture
async def audit_ledger(sessions: SessionFactory) -> AsyncIterator[AuditLedger]:
    """Checks, once the test's clients are closed, one audit row per audited call."""
    ledger = AuditLedger(sessions)
    yield ledger
    await ledger.check_complete()


@pytest.fixture
async def app_stack(audit_ledger: AuditLedger) -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


AppFactory = Callable[..., ApiClients]


@pytest.fixture
def make_db_app(
    sessions: SessionFactory, app_stack: AsyncExitStack, audit_ledger: AuditLedger
) -> AppFactory:
    """Apps without Temporal whose settings differ from the defaults as given."""

    def make(**settings: Any) -> ApiClients:
        app = create_app(sessions=sessions, settings=get_settings().model_copy(update=settings))
        return ApiClients(app, sessions, app_stack, audit_ledger)

    return make


@pytest.fixture
def make_full_app(
    sessions: SessionFactory,
    client: Client,  # noqa: F811 - the fixtures imported above
    task_queue: str,  # noqa: F811
    app_stack: AsyncExitStack,
    audit_ledger: AuditLedger,
) -> AppFactory:
    """Whole APIs (a real worker serves what they start), with settings changed as given."""

    def make(**settings: Any) -> ApiClients:
        app = create_app(
            sessions=sessions,
            temporal=client,
            task_queue=task_queue,
            settings=get_settings().model_copy(update=settings),
        )
        return ApiClients(app, sessions, app_stack, audit_ledger)

    return make


@pytest.fixture
def full_app(make_full_app: AppFactory) -> ApiClients:
    """The whole API: a real worker serves the campaigns and journeys it starts."""
    return make_full_app()


@pytest.fixture
def db_app(make_db_app: AppFactory) -> ApiClients:
    """The API with a database and no Temporal: enough for resources and profiles."""
    return make_db_app()


@pytest.fixture
async def api(full_app: ApiClients) -> httpx.AsyncClient:
    """An admin of every business line, on the whole API."""
    return await full_app.client("admin")


@pytest.fixture
async def db_api(db_app: ApiClients) -> httpx.AsyncClient:
    """An admin of every business line, on the API without Temporal."""
    return await db_app.client("admin")
