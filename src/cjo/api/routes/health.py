"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can work)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from temporalio.client import Client

from cjo.api.deps import StateDep
from cjo.api.problems import ApiProblem, problem_responses
from cjo.store.db import SessionFactory, reading

router = APIRouter(tags=["health"])
# A probe must answer before the orchestrator's own timeout, even when a part hangs.
CHECK_TIMEOUT_SECONDS = 2.0
OK = "ok"


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}]
        }
    )

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process answers; nothing else is checked (no database, no Temporal)."""
    return Health()


@router.get(
    "/readyz",
    summary="Readiness: the database and Temporal are reachable",
    responses=problem_responses(503),
)
async def readyz(state: StateDep) -> Readiness:
    """`checks` says, per part, `ok` or what went wrong; 503 when a part is not ok."""
    database, temporal = await asyncio.gather(
        _check_database(state.sessions), _check_temporal(state.temporal)
    )
    checks = {"database": database, "temporal": temporal}
    failing = sorted(name for name, result in checks.items() if result != OK)
    if failing:
        raise ApiProblem(503, "not-ready", f"not ready: {', '.join(failing)}", checks=checks)
    return Readiness(checks=checks)


async def _check_database(sessions: SessionFactory | None) -> str:
    if sessions is None:
        return "not connected"

    async def probe() -> None:
        async with reading(sessions) as connection:
            await connection.execute(text("SELECT 1"))

    return await _checked(probe())


async def _check_temporal(client: Client | None) -> str:
    if client is None:
        return "not connected"

    async def probe() -> None:
        healthy = await client.service_client.check_health(
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
        )
        if not healthy:
            raise RuntimeError("the frontend reports itself unhealthy")

    return await _checked(probe())


async def _checked(probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as error:  # noqa: BLE001 - any failure means "not ready", said briefly
        return f"{type(error).__name__}: {str(error)[:200]}"
    return OK
