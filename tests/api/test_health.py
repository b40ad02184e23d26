"""Liveness, readiness, the lifespan that connects from settings, and the OpenAPI document."""

from __future__ import annotations

import httpx
from temporalio.testing import WorkflowEnvironment

from cjo.api import create_app
from cjo.api.deps import ApiState
from cjo.runtime.settings import Settings
from tests.api.conftest import BASE_URL
from tests.api.support import problem


async def test_healthz_answers_without_dependencies() -> None:
    app = create_app(settings=Settings(task_queue="unused"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        answer = await http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_readyz_checks_database_and_temporal(api: httpx.AsyncClient) -> None:
    answer = await api.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}


async def test_readyz_is_a_503_problem_naming_what_is_missing(db_api: httpx.AsyncClient) -> None:
    body = problem(await db_api.get("/readyz"), 503)
    assert body["checks"] == {"database": "ok", "temporal": "not connected"}
    assert body["detail"] == "not ready: temporal"


async def test_the_lifespan_connects_from_settings_and_closes_what_it_made(
    database_url: str, env: WorkflowEnvironment
) -> None:
    settings = Settings(
        database_url=database_url,
        temporal_address=env.client.service_client.config.target_host,
        task_queue="lifespan-test",
    )
    app = create_app(settings=settings)
    state: ApiState = app.state.cjo
    assert state.sessions is None and state.temporal is None
    async with app.router.lifespan_context(app):
        assert state.sessions is not None and state.temporal is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
    assert state.sessions is None  # its engine was disposed


async def test_openapi_documents_the_api_and_its_auth(db_api: httpx.AsyncClient) -> None:
    document = (await db_api.get("/openapi.json")).json()
    assert "X-API-Key" in document["info"]["description"]
    assert {"ApiKey", "BearerJWT"} <= set(document["components"]["securitySchemes"])
    paths = document["paths"]
    assert "application/yaml" in paths["/v1/resources"]["post"]["requestBody"]["content"]
    assert (
        "id"
        not in (
            paths["/v1/users/{user_id}"]["put"]["requestBody"]["content"]["application/json"][
                "schema"
            ]["properties"]
        )
    )
    for path in (
        "/v1/resources/validate",
        "/v1/users/batch",
        "/v1/users/{user_id}/consents",
        "/v1/users/{user_id}/journeys",
        "/v1/events",
        "/v1/campaigns",
        "/v1/campaigns/{campaign_id}/launch",
        "/v1/campaigns/{campaign_id}/stats",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    launch = paths["/v1/campaigns/{campaign_id}/launch"]["post"]["responses"]
    assert "application/problem+json" in launch["409"]["content"]
