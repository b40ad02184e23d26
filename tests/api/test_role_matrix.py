"""The role × endpoint matrix: every route of the app, called with every role.

The routes come from the app itself, so a new endpoint without a line in `MINIMUM_ROLE`
fails `test_every_route_has_an_expected_role` until someone decides who may call it.
A role at or above the minimum must get past authorisation (2xx, or a 4xx such as 404 or
422 on the made-up ids and bodies used here, never 401, 403 or 5xx); a role below it
must get 403; no credentials or a bad key, 401. Runs on the whole app: a real database,
a real Temporal test server and worker.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from cjo.api import create_app
from cjo.runtime.settings import get_settings
from tests.api.conftest import ApiClients

Access = Literal["viewer", "operator", "approver", "admin", "public", "provider"]
ROLES = ("viewer", "operator", "approver", "admin")

# (method, path) -> the least role that may call it; "public": anyone, no credentials;
# "provider": signed by a provider, never opened by a principal's key.
MINIMUM_ROLE: dict[tuple[str, str], Access] = {
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/r/{message_id}/{index}"): "public",
    ("POST", "/v1/channels/{channel}/receipts"): "provider",
    ("POST", "/v1/channels/sms/replies"): "provider",
    ("POST", "/v1/resources/validate"): "viewer",
    ("POST", "/v1/resources"): "operator",
    ("GET", "/v1/resources"): "viewer",
    ("GET", "/v1/resources/{kind}/{name}"): "viewer",
    ("GET", "/v1/resources/{kind}/{name}/versions"): "viewer",
    ("GET", "/v1/resources/{kind}/{name}/versions/{version}"): "viewer",
    ("GET", "/v1/resources/{kind}/{name}/diff"): "viewer",
    ("PUT", "/v1/users/{user_id}"): "operator",
    ("POST", "/v1/users/batch"): "operator",
    ("GET", "/v1/users/{user_id}"): "viewer",
    ("PUT", "/v1/users/{user_id}/consents"): "operator",
    ("GET", "/v1/users/{user_id}/journeys"): "viewer",
    ("GET", "/v1/users/{user_id}/inbox"): "viewer",
    ("POST", "/v1/users/{user_id}/inbox/{message_id}/read"): "operator",
    ("GET", "/v1/users/{user_id}/messages"): "viewer",
    ("GET", "/v1/users/{user_id}/grants"): "viewer",
    ("POST", "/v1/events"): "operator",
    ("GET", "/v1/campaigns"): "viewer",
    ("POST", "/v1/campaigns"): "operator",
    ("GET", "/v1/campaigns/{campaign_id}"): "viewer",
    ("PATCH", "/v1/campaigns/{campaign_id}"): "operator",
    ("GET", "/v1/campaigns/{campaign_id}/stats"): "viewer",
    ("GET", "/v1/campaigns/{campaign_id}/steps/{step_id}/users"): "viewer",
    ("GET", "/v1/campaigns/{campaign_id}/approvals"): "viewer",
    ("POST", "/v1/campaigns/{campaign_id}/submit"): "operator",
    ("POST", "/v1/campaigns/{campaign_id}/approve"): "approver",
    ("POST", "/v1/campaigns/{campaign_id}/reject"): "approver",
    ("POST", "/v1/campaigns/{campaign_id}/launch"): "operator",
    ("POST", "/v1/campaigns/{campaign_id}/pause"): "operator",
    ("POST", "/v1/campaigns/{campaign_id}/resume"): "operator",
    ("POST", "/v1/campaigns/{campaign_id}/stop"): "operator",
    ("GET", "/v1/segments/{name}/count"): "viewer",
    ("GET", "/v1/segments/{name}/sample"): "viewer",
    ("GET", "/v1/benefits/{name}/status"): "viewer",
    ("POST", "/v1/grants/{grant_id}/redeem"): "operator",
    ("POST", "/v1/grants/{grant_id}/revoke"): "operator",
    ("GET", "/v1/audit"): "admin",
}
# Made-up values for path parameters: nothing by these names exists.
PATH_VALUES = {"index": "0", "kind": "Journey", "channel": "sms", "version": "v1"}


def endpoints(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path is not None
        for method in route.methods or ()
        if method != "HEAD"
    )


def concrete(path: str) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), f"no-such-{m.group(1)}"), path
    )


def request_of(method: str, path: str) -> dict[str, Any]:
    """An Idempotency-Key for routes that want one; an empty JSON body for writes."""
    kwargs: dict[str, Any] = {"headers": {"Idempotency-Key": "matrix-1"}}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return kwargs


def allowed(access: Access, role: str) -> bool:
    if access == "admin":
        return role == "admin"
    return role == "admin" or ROLES.index(role) >= ROLES.index(access)


def test_every_route_has_an_expected_role() -> None:
    app = create_app(settings=get_settings().model_copy(update={"task_queue": "unused"}))
    missing = [endpoint for endpoint in endpoints(app) if endpoint not in MINIMUM_ROLE]
    assert missing == [], f"routes with no expected role in MINIMUM_ROLE: {missing}"


async def test_each_role_gets_what_its_role_allows_on_every_route(full_app: ApiClients) -> None:
    anonymous = await full_app.client(headers={})
    bad_key = await full_app.client(headers={"X-API-Key": "key_0123456789abcdef.forged"})
    clients = {role: await full_app.client(role) for role in ROLES}
    wrong: list[str] = []
    for method, template in endpoints(full_app.app):
        access = MINIMUM_ROLE.get((method, template))
        if access is None:
            continue  # reported by test_every_route_has_an_expected_role
        path = concrete(template)

        async def call(http: httpx.AsyncClient, method: str = method, path: str = path) -> int:
            return (await http.request(method, path, **request_of(method, path))).status_code

        if access == "public":
            status = await call(anonymous)
            if status in (401, 403) or status >= 500 and template != "/readyz":
                wrong.append(f"{method} {template} anonymous: {status}")
            continue
        if access == "provider":
            # A principal's key does not stand in for a provider's signature.
            for who, http in (("anonymous", anonymous), ("admin", clients["admin"])):
                if (status := await call(http)) != 401:
                    wrong.append(f"{method} {template} {who}: {status}, not 401")
            continue
        for who, http in (("anonymous", anonymous), ("bad key", bad_key)):
            if (status := await call(http)) != 401:
                wrong.append(f"{method} {template} {who}: {status}, not 401")
        for role, http in clients.items():
            status = await call(http)
            if allowed(access, role):
                if status in (401, 403) or status >= 500:
                    wrong.append(f"{method} {template} {role}: {status}, should be let in")
            elif status != 403:
                wrong.append(f"{method} {template} {role}: {status}, not 403")
    assert wrong == [], "\n".join(wrong)
