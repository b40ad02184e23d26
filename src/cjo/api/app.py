"""The FastAPI app: `create_app()` wires the routes, the problem handlers and the lifespan.

Given a session factory and a Temporal client (as the tests give theirs), the app uses
them as they are. Whatever is not given, the lifespan makes once at start-up from the
settings: the embedded PostgreSQL and Temporal dev server (`cjo.runtime.stack`) unless
`CJO_DATABASE_URL` / `CJO_TEMPORAL_ADDRESS` point elsewhere. The lifespan closes only
what it made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from cjo.activities.calls.catalog import default_registry
from cjo.api._limits import BodyLimitMiddleware, RateLimiter
from cjo.api.audit import AuditMiddleware
from cjo.api.auth import GuardMiddleware
from cjo.api.deps import ApiState
from cjo.api.openapi import install_openapi
from cjo.api.problems import install_problem_handlers
from cjo.api.routes.audit import router as audit_router
from cjo.api.routes.benefits import router as benefits_router
from cjo.api.routes.campaign_reports import router as campaign_reports_router
from cjo.api.routes.campaign_review import router as campaign_review_router
from cjo.api.routes.campaigns import router as campaigns_router
from cjo.api.routes.channels import router as channels_router
from cjo.api.routes.events import router as events_router
from cjo.api.routes.health import router as health_router
from cjo.api.routes.links import router as links_router
from cjo.api.routes.messages import router as messages_router
from cjo.api.routes.resource_reads import router as resource_reads_router
from cjo.api.routes.resources import router as resources_router
from cjo.api.routes.segments import router as segments_router
from cjo.api.routes.users import router as users_router
from cjo.runtime import stack
from cjo.runtime.settings import Settings, get_settings
from cjo.runtime.temporal import connect
from cjo.store.db import SessionFactory, make_engine, make_sessions

DESCRIPTION = """\
Customer-journey operations for a bank: publish journeys and their resources as YAML,
keep customer profiles, consents and events, and run campaigns durably on Temporal.

Errors are RFC 9457 problem details (`application/problem+json`).

**Authentication**: every `/v1` call carries `X-API-Key: <key>` or
`Authorization: Bearer <JWT>`, except the provider callbacks under `/v1/channels`, which
are signature-checked. Roles: viewer < operator < approver, and admin. A principal is
scoped to business lines: anything of another line answers 404. Every mutating call is
audited (`GET /v1/audit`). Over-large bodies answer 413; too many requests, 429.
"""


def create_app(
    *,
    sessions: SessionFactory | None = None,
    temporal: Client | None = None,
    task_queue: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    state = ApiState(
        settings=settings,
        task_queue=task_queue or settings.task_queue,
        registry=default_registry(),
        sessions=sessions,
        temporal=temporal,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine = await _connect_missing(state)
        try:
            yield
        finally:
            if engine is not None:
                state.sessions = None
                await engine.dispose()

    app = FastAPI(title="CJO", version="1", description=DESCRIPTION, lifespan=lifespan)
    # Set here, not in the lifespan: test clients that skip the lifespan still see it.
    app.state.cjo = state
    # Added innermost first: audit (request ids, rows) → guard (who, how often) → body cap,
    # so an authenticated call refused for its size is audited too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(GuardMiddleware, limiter=RateLimiter(settings.rate_limit_per_minute))
    app.add_middleware(AuditMiddleware)
    install_problem_handlers(app)
    for router in (
        health_router,
        resources_router,
        resource_reads_router,
        users_router,
        messages_router,
        events_router,
        campaign_reports_router,
        campaigns_router,
        campaign_review_router,
        segments_router,
        benefits_router,
        channels_router,
        links_router,
        audit_router,
    ):
        app.include_router(router)
    install_openapi(app)
    return app


async def _connect_missing(state: ApiState) -> AsyncEngine | None:
    """Make the session factory and Temporal client the app was not given; the new engine."""
    settings = state.settings
    engine: AsyncEngine | None = None
    address: str | None = None
    if state.sessions is None:
        # Starting the embedded servers blocks (it waits for their ports): not on the loop.
        info = await asyncio.to_thread(stack.start, settings, temporal=state.temporal is None)
        engine = make_engine(info.database_url, pool_size=settings.database_pool_size)
        state.sessions = make_sessions(engine)
        address = info.temporal_address or None
    elif state.temporal is None and not settings.temporal_address:
        address = await asyncio.to_thread(stack.start_temporal, settings)
    if state.temporal is None:
        try:
            state.temporal = await connect(settings, address)
        except BaseException:
            if engine is not None:
                state.sessions = None
                await engine.dispose()
            raise
    return engine
