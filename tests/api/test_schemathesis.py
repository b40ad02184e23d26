"""The API against its own OpenAPI document: Schemathesis' stateless checks, every operation.

Schemathesis reads the document the app serves and makes requests from it: the examples
the document shows, requests that fit it (positive) and requests that break it (negative),
some of them naming things that exist (a published journey, a customer, a campaign), so
that answers other than "not found" are checked too. Each request goes to the whole app in
this process (real PostgreSQL, the Temporal test server and a worker) with an admin's API
key; provider callbacks are signed as their provider would. Every answer must be:

- no server error (`not_a_server_error`): bad input is a 4xx problem, never a 500;
- of a status the operation documents, in the content type documented for it, with a
  body that fits the documented schema (`status_code_conformance`,
  `content_type_conformance`, `response_schema_conformance`).

Each operation gets a few examples only, so that this stays quick, and the runs are
derandomised: the same code makes the same requests, so a failure here is never a fluke.
To look harder, set `CJO_SCHEMATHESIS_EXAMPLES` (e.g. 500): then each run draws anew.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cjo.api import create_app
from cjo.delivery.signing import signed_headers
from cjo.runtime.settings import ProviderSettings, Settings
from tests.api.conftest import BASE_URL, AppFactory
from tests.api.support import add_customer, problem, publish

SCHEMA = schemathesis.openapi.from_dict(create_app(settings=Settings(task_queue="st")).openapi())
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
LOOK_HARDER = os.environ.get("CJO_SCHEMATHESIS_EXAMPLES")
EXAMPLES = int(LOOK_HARDER or "6")
PROVIDER_SECRET = "schemathesis-provider-secret"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
USER = "u-10293"


class World:
    """What exists when the requests begin: the names a request may use to find something."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id

    def path_parameters(self, path: str) -> dict[str, str]:
        """Names of existing things for the path's parameters (a `{name}` depends on where)."""
        known = {
            "user_id": USER,
            "campaign_id": self.campaign_id,
            "step_id": "await_activation",
            "kind": "Journey",
            "version": "1",
            "channel": "sms",
        }
        if path.startswith("/v1/benefits/"):
            known["name"] = "activation-cashback-20"
        elif path.startswith("/v1/resources/"):
            known["name"] = "card-activation"
        return known


@pytest.fixture
async def admin(make_full_app: AppFactory) -> httpx.AsyncClient:
    """An admin client of the whole app, over no rate limit, whose providers have a secret."""
    provider = ProviderSettings(
        kind="http", url="http://127.0.0.1:9/unused", secret=SecretStr(PROVIDER_SECRET)
    )
    apis = make_full_app(
        rate_limit_per_minute=1_000_000,
        providers={"*": {"sms": provider, "email": provider, "push": provider}},
    )
    return await apis.client("admin")


@pytest.fixture
async def world(admin: httpx.AsyncClient) -> World:
    journey = await publish(admin, "card_activation.yaml")
    await add_customer(admin, USER)
    created = await admin.post(
        "/v1/campaigns",
        json={"journey": journey["name"], "business_line": journey["business_line"]},
    )
    assert created.status_code == 201, created.text
    return World(created.json()["id"])


def cases(label: str, world: World) -> st.SearchStrategy[schemathesis.Case]:
    """The document's examples, requests that fit it and ones that break it, some of them
    naming existing things."""
    operation = OPERATIONS[label]
    strategies = [
        *operation.get_strategies_from_examples(),
        operation.as_strategy(GenerationMode.POSITIVE),
    ]
    names = {parameter.name for parameter in operation.path_parameters}
    known = {k: v for k, v in world.path_parameters(operation.path).items() if k in names}
    if known:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
    if operation.path_parameters or operation.query or operation.body or operation.headers:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def request_of(case: schemathesis.Case) -> httpx.Request:
    """The case as an httpx request (Schemathesis' own transports would run the app in
    another thread and event loop, away from this test's database and Temporal clients)."""
    sent = case.as_transport_kwargs(base_url=BASE_URL)
    given = {k: str(v) for k, v in sent["headers"].items() if not k.startswith("X-Schemathesis")}
    if any(_unsendable(value) for value in given.values()):
        reject()  # no HTTP client would send it; a server never sees it
    # As bytes: HTTP carries Latin-1 in headers (Starlette reads them so); httpx takes only
    # ASCII text.
    headers: dict[str, str | bytes] = {k: v.encode("latin-1") for k, v in given.items()}
    content: bytes | None = None
    if case.media_type in YAML_TYPES and isinstance(case.body, str):
        # The bundle is the body itself; Schemathesis would send it as a quoted YAML string.
        content = case.body.encode()
    elif "json" in sent:
        content = json.dumps(sent["json"]).encode()
    elif isinstance(sent.get("data"), str | bytes):
        content = sent["data"].encode() if isinstance(sent["data"], str) else sent["data"]
    if case.path.startswith("/v1/channels/") and content is not None:
        # As the provider would: a fresh signature over the exact body.
        headers.update(signed_headers(PROVIDER_SECRET, int(time.time()), content))
    return httpx.Request(
        sent["method"],
        sent["url"],
        params=sent.get("params"),
        headers=headers,
        content=content,
        data=sent.get("data") if isinstance(sent.get("data"), dict) else None,
    )


def _unsendable(value: str) -> bool:
    """Not Latin-1, or with control characters: no HTTP/1.1 message can carry it."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return True
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value if c != "\t")


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not LOOK_HARDER,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_operation_keeps_its_contract(
    label: str, admin: httpx.AsyncClient, world: World, data: st.DataObject
) -> None:
    case = data.draw(cases(label, world), label="case")
    # The admin's key is the client's; a generated one would only replace it.
    request = request_of(case)
    request.headers.pop("Authorization", None)
    request.headers["X-API-Key"] = admin.headers["X-API-Key"]
    answer = await admin.send(request)
    case.validate_response(answer, checks=CHECKS)


# What Schemathesis found, pinned: each was a 500 (or an undocumented status) before.


async def test_a_link_signature_that_is_not_ascii_is_not_found(db_api: httpx.AsyncClient) -> None:
    # hmac.compare_digest refused non-ASCII text: a mangled link was a 500.
    body = problem(await db_api.get("/r/m-1/0", params={"s": "é签名"}), 404)
    assert body["detail"] == "no such link"


async def test_a_provider_signature_that_is_not_ascii_is_refused(
    make_db_app: AppFactory,
) -> None:
    provider = ProviderSettings(kind="http", url="http://127.0.0.1:9/", secret=SecretStr("s"))
    apis = make_db_app(providers={"*": {"sms": provider}})
    callbacks = await apis.client(headers={})
    body = json.dumps({"replies": []}).encode()
    headers: dict[str, str | bytes] = {**signed_headers("s", int(time.time()), body)}
    # Starlette reads header bytes as latin-1: any byte over 0x7f is a non-ASCII character.
    headers["X-CJO-Signature"] = b"sha256=caf\xe9"
    answer = await callbacks.post("/v1/channels/sms/replies", content=body, headers=headers)
    assert problem(answer, 401)["type"] == "urn:cjo:problem:invalid-signature"


async def test_a_value_postgresql_cannot_store_is_a_422_problem(
    db_api: httpx.AsyncClient,
) -> None:
    # PostgreSQL's text and jsonb hold no NUL character: the upsert failed with a 500.
    answer = await db_api.put(f"/v1/users/{USER}", json={"name": "Li\x00Lei"})
    body = problem(answer, 422)
    assert body["type"] == "urn:cjo:problem:invalid-value"
    assert "Traceback" not in body["detail"] and "INSERT" not in body["detail"]
    missing = await db_api.get(f"/v1/users/{USER}")
    problem(missing, 404)  # nothing was stored


async def test_a_body_that_is_not_utf8_is_a_documented_400_problem(
    db_api: httpx.AsyncClient,
) -> None:
    answer = await db_api.post(
        "/v1/users/batch",
        content=b'{"users": "\xe9"}',  # Latin-1, not UTF-8
        headers={"Content-Type": "application/json"},
    )
    problem(answer, 400)
    assert "400" in OPERATIONS["POST /v1/users/batch"].definition.raw["responses"]
