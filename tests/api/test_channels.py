"""Provider callbacks through the API: signatures, receipts as events, opt-out replies."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from cjo.api import create_app
from cjo.delivery.signing import signed_headers
from cjo.runtime.settings import ProviderSettings, Settings
from cjo.store.db import SessionFactory, reading
from tests.api.conftest import BASE_URL
from tests.api.support import problem
from tests.delivery.message_rows import add_profile, message, store

SHARED_PUSH = "push-secret"
SHARED_SMS = "sms-secret"
WEALTH_SMS = "wealth-sms-secret"


def provider(secret: str | None) -> ProviderSettings:
    return ProviderSettings(
        kind="http",
        url="http://127.0.0.1:9/send",
        secret=None if secret is None else SecretStr(secret),
    )


SETTINGS = Settings(
    providers={
        "*": {
            "push": provider(SHARED_PUSH),
            "sms": provider(SHARED_SMS),
            "wechat": provider(None),
        },
        "wealth": {"sms": provider(WEALTH_SMS)},
    }
)


def app_client(sessions: SessionFactory, env: WorkflowEnvironment | None) -> httpx.AsyncClient:
    app = create_app(
        sessions=sessions,
        temporal=None if env is None else env.client,
        task_queue="callbacks",
        settings=SETTINGS,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def callbacks(
    sessions: SessionFactory, env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(sessions, env) as http:
        yield http


async def post_signed(
    http: httpx.AsyncClient,
    path: str,
    payload: Any,
    secret: str,
    *,
    timestamp: int | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = signed_headers(secret, timestamp or int(time.time()), body)
    headers["content-type"] = "application/json"
    return await http.post(path, content=body, headers=headers, params=params)


async def scalar_rows(sessions: SessionFactory, sql: str) -> list[tuple[object, ...]]:
    async with reading(sessions) as connection:
        return [tuple(row) for row in await connection.execute(text(sql))]


RECEIPTS = "/v1/channels/push/receipts"


async def test_signed_receipts_are_recorded_once_and_become_events(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await store(sessions, message("m1"), message("m2"))
    reports = {
        "reports": [
            {"message_id": "m1", "status": "delivered", "provider_ref": "p-1"},
            {"message_id": "m2", "status": "failed", "detail": {"error": "token expired"}},
            {"message_id": "m1", "status": "opened", "at": "2026-03-01T10:05:00+08:00"},
            {"message_id": "ghost", "status": "delivered"},
        ]
    }
    answer = await post_signed(callbacks, RECEIPTS, reports, SHARED_PUSH)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 3, "duplicates": 0, "unknown": 1, "events": 3}
    again = await post_signed(callbacks, RECEIPTS, reports, SHARED_PUSH)
    assert again.json() == {"recorded": 0, "duplicates": 3, "unknown": 1, "events": 0}
    assert await scalar_rows(sessions, "SELECT id, status FROM messages ORDER BY id") == [
        ("m1", "delivered"),
        ("m2", "failed"),
    ]
    events = await scalar_rows(
        sessions, "SELECT name, props->>'message_id', props->>'step' FROM events ORDER BY name"
    )
    assert events == [
        ("message_delivered", "m1", "push_offer"),
        ("message_failed", "m2", "push_offer"),
        ("message_opened", "m1", "push_offer"),
    ]


@pytest.mark.parametrize(
    "tamper",
    ["no headers", "wrong secret", "stale", "future", "altered body", "bad scheme"],
)
async def test_receipts_without_a_valid_fresh_signature_are_refused(
    callbacks: httpx.AsyncClient, sessions: SessionFactory, tamper: str
) -> None:
    await store(sessions, message("m1"))
    body = json.dumps({"reports": [{"message_id": "m1", "status": "delivered"}]}).encode()
    now = int(time.time())
    headers = signed_headers(SHARED_PUSH, now, body)
    if tamper == "no headers":
        headers = {}
    elif tamper == "wrong secret":
        headers = signed_headers("not-the-secret", now, body)
    elif tamper == "stale":
        headers = signed_headers(SHARED_PUSH, now - 3600, body)
    elif tamper == "future":
        headers = signed_headers(SHARED_PUSH, now + 3600, body)
    elif tamper == "altered body":
        body = body.replace(b"delivered", b"failed")
    elif tamper == "bad scheme":
        headers["X-CJO-Signature"] = headers["X-CJO-Signature"].replace("sha256=", "md5=")
    answer = await callbacks.post(
        RECEIPTS, content=body, headers={**headers, "content-type": "application/json"}
    )
    assert problem(answer, 401)["type"] == "urn:cjo:problem:invalid-signature"
    assert await scalar_rows(sessions, "SELECT count(*) FROM delivery_receipts") == [(0,)]
    assert await scalar_rows(sessions, "SELECT status FROM messages") == [("sent",)]


async def test_an_unsigned_malformed_body_is_401_not_422(callbacks: httpx.AsyncClient) -> None:
    """The signature is checked before the body is read as JSON."""
    answer = await callbacks.post(
        RECEIPTS, content=b"{not json", headers={"content-type": "application/json"}
    )
    problem(answer, 401)


async def test_a_channel_with_no_provider_secret_cannot_call_back(
    callbacks: httpx.AsyncClient,
) -> None:
    payload = {"reports": []}
    for path in ("/v1/channels/wechat/receipts", "/v1/channels/email/receipts"):
        answer = await post_signed(callbacks, path, payload, "anything")
        assert "no provider with a secret" in problem(answer, 401)["detail"]
    assert (await callbacks.post("/v1/channels/fax/receipts", json=payload)).status_code == 422


async def test_a_provider_reports_only_on_its_own_channel_and_business_lines(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await store(
        sessions,
        message("retail-push"),
        message("retail-sms", channel="sms"),
        message("wealth-sms", channel="sms", business_line="wealth"),
    )

    def batch(*ids: str) -> dict[str, Any]:
        return {"reports": [{"message_id": i, "status": "delivered"} for i in ids]}

    # The shared SMS provider: not the push message, not the wealth line's SMS.
    shared = await post_signed(
        callbacks,
        "/v1/channels/sms/receipts",
        batch("retail-push", "retail-sms", "wealth-sms"),
        SHARED_SMS,
    )
    assert shared.json() == {"recorded": 1, "duplicates": 0, "unknown": 2, "events": 1}
    # The wealth line's own SMS provider names its line; its secret does not pass for "*".
    wealth = await post_signed(
        callbacks,
        "/v1/channels/sms/receipts",
        batch("wealth-sms", "retail-sms"),
        WEALTH_SMS,
        params={"business_line": "wealth"},
    )
    assert wealth.json() == {"recorded": 1, "duplicates": 0, "unknown": 1, "events": 1}
    posing = await post_signed(
        callbacks, "/v1/channels/sms/receipts", batch("wealth-sms"), WEALTH_SMS
    )
    problem(posing, 401)
    assert await scalar_rows(sessions, "SELECT id, status FROM messages ORDER BY id") == [
        ("retail-push", "sent"),
        ("retail-sms", "delivered"),
        ("wealth-sms", "delivered"),
    ]


async def test_signed_but_invalid_receipts_are_422_and_batches_bounded(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    bad = {"reports": [{"message_id": "m1", "status": "sent"}, {"status": "opened"}]}
    body = problem(await post_signed(callbacks, RECEIPTS, bad, SHARED_PUSH), 422)
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"body.reports.0.status", "body.reports.1.message_id"}
    naive = {"reports": [{"message_id": "m1", "status": "opened", "at": "2026-03-01T10:00:00"}]}
    problem(await post_signed(callbacks, RECEIPTS, naive, SHARED_PUSH), 422)
    many = {"reports": [{"message_id": f"m{n}", "status": "opened"} for n in range(1001)]}
    problem(await post_signed(callbacks, RECEIPTS, many, SHARED_PUSH), 413)
    assert await scalar_rows(sessions, "SELECT count(*) FROM delivery_receipts") == [(0,)]


REPLIES = "/v1/channels/sms/replies"


async def test_an_opt_out_reply_revokes_sms_consent_with_its_source(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_profile(sessions, "u1", phone="13800000001")
    await add_profile(sessions, "u2", phone="13900000002")
    replies = {
        "replies": [
            {"from": "+86 138 0000 0001", "text": "退订", "id": "r-1"},
            {"from": "13900000002", "text": "thanks!", "id": "r-2"},
            {"from": "13700000000", "text": "STOP", "id": "r-3"},
        ]
    }
    answer = await post_signed(callbacks, REPLIES, replies, SHARED_SMS)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 3, "opt_outs": 2, "revoked": 1, "unmatched": 1}
    assert await scalar_rows(
        sessions, "SELECT user_id, channel, granted, source FROM consents"
    ) == [("u1", "sms", False, "sms_reply")]
    events = await scalar_rows(
        sessions, "SELECT user_id, name, props->>'opted_out' FROM events ORDER BY user_id"
    )
    assert events == [("u1", "sms_replied", "true"), ("u2", "sms_replied", "false")]


async def test_replies_need_the_sms_providers_signature(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_profile(sessions, "u1", phone="13800000001")
    replies = {"replies": [{"from": "13800000001", "text": "R"}]}
    problem(await post_signed(callbacks, REPLIES, replies, SHARED_PUSH), 401)
    problem(await callbacks.post(REPLIES, json=replies), 401)
    assert await scalar_rows(sessions, "SELECT count(*) FROM consents") == [(0,)]
    # The wealth line's SMS provider may report opt-outs too: consent is the customer's.
    wealth = await post_signed(
        callbacks, REPLIES, replies, WEALTH_SMS, params={"business_line": "wealth"}
    )
    assert wealth.json()["revoked"] == 1


async def test_an_opt_out_is_taken_while_temporal_is_away(sessions: SessionFactory) -> None:
    await add_profile(sessions, "u1", phone="13800000001")
    async with app_client(sessions, None) as http:
        replies = {"replies": [{"from": "13800000001", "text": "td"}]}
        answer = await post_signed(http, REPLIES, replies, SHARED_SMS)
        assert answer.json()["revoked"] == 1
        # Receipts, though, wait for Temporal (the provider retries): journeys need them.
        receipts = {"reports": [{"message_id": "m1", "status": "delivered"}]}
        problem(await post_signed(http, RECEIPTS, receipts, SHARED_PUSH), 503)
    assert await scalar_rows(sessions, "SELECT granted FROM consents") == [(False,)]


async def test_a_reply_dated_in_the_future_is_dated_now(
    callbacks: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_profile(sessions, "u1", phone="13800000001")
    replies = {"replies": [{"from": "13800000001", "text": "R", "at": "2099-01-01T00:00:00Z"}]}
    assert (await post_signed(callbacks, REPLIES, replies, SHARED_SMS)).json()["revoked"] == 1
    ((updated,),) = await scalar_rows(sessions, "SELECT updated_at FROM consents")
    assert updated.year < 2099  # type: ignore[attr-defined]
