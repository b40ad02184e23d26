"""Profiles and consents through the API."""

from __future__ import annotations

import httpx

from tests.api.support import problem


async def test_put_user_creates_then_changes_only_what_is_given(db_api: httpx.AsyncClient) -> None:
    created = await db_api.put(
        "/v1/users/u1",
        json={
            "name": "韩梅梅",
            "phone": "13800000002",
            "tags": ["payroll"],
            "attrs": {"aum": 80000, "segment": "gold"},
            "lifecycle": "dormant",
        },
    )
    assert created.status_code == 200, created.text
    assert created.json() == {"id": "u1", "created": True}
    changed = await db_api.put(
        "/v1/users/u1", json={"id": "u1", "email": "u1@example.com", "attrs": {"segment": None}}
    )
    assert changed.json() == {"id": "u1", "created": False}
    profile = (await db_api.get("/v1/users/u1")).json()
    assert profile["name"] == "韩梅梅" and profile["phone"] == "13800000002"  # kept
    assert profile["email"] == "u1@example.com"
    assert profile["attrs"] == {"aum": 80000}  # merged; a null removes the key
    assert profile["tags"] == ["payroll"] and profile["lifecycle"] == "dormant"


async def test_put_user_refuses_bad_fields_with_a_readable_422(db_api: httpx.AsyncClient) -> None:
    answer = await db_api.put(
        "/v1/users/u1", json={"email": "not-an-email", "timezone": "Mars/Olympus"}
    )
    body = problem(answer, 422)
    assert body["type"] == "urn:cjo:problem:invalid-request"
    assert sorted(error["field"] for error in body["errors"]) == ["body.email", "body.timezone"]
    assert all(error["message"] for error in body["errors"])
    assert "(and 1 more)" in body["detail"]
    mismatch = await db_api.put("/v1/users/u1", json={"id": "u2"})
    assert "differs" in problem(mismatch, 422)["detail"]
    problem(await db_api.get("/v1/users/u1"), 404)  # nothing was stored


async def test_batch_upserts_and_counts(db_api: httpx.AsyncClient) -> None:
    profiles = [{"id": f"b{n}", "lifecycle": "new"} for n in range(5)]
    first = await db_api.post("/v1/users/batch", json={"users": profiles})
    assert first.json() == {"created": 5, "updated": 0}
    again = await db_api.post("/v1/users/batch", json={"users": [*profiles[:2], {"id": "b9"}]})
    assert again.json() == {"created": 1, "updated": 2}
    too_many = [{"id": f"x{n}"} for n in range(1001)]
    body = problem(await db_api.post("/v1/users/batch", json={"users": too_many}), 413)
    assert "1001" in body["detail"]
    problem(await db_api.get("/v1/users/x0"), 404)


async def test_consents_are_recorded_per_channel(db_api: httpx.AsyncClient) -> None:
    await db_api.put("/v1/users/u1", json={"name": "李雷"})
    answer = await db_api.put(
        "/v1/users/u1/consents", json={"consents": {"sms": True, "email": False}, "source": "app"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user_id": "u1", "applied": ["sms", "email"], "superseded": []}
    profile = (await db_api.get("/v1/users/u1")).json()
    assert profile["consents"] == {"sms": True, "email": False}
    unknown = await db_api.put(
        "/v1/users/ghost/consents", json={"consents": {"sms": True}, "source": "app"}
    )
    assert problem(unknown, 404)["detail"] == "no user ghost"
    bad_channel = await db_api.put(
        "/v1/users/u1/consents", json={"consents": {"fax": True}, "source": "app"}
    )
    assert problem(bad_channel, 422)["errors"][0]["field"].startswith("body.consents")


async def test_journeys_of_an_unknown_user_are_404(db_api: httpx.AsyncClient) -> None:
    problem(await db_api.get("/v1/users/ghost/journeys"), 404)
    await db_api.put("/v1/users/u1", json={})
    answer = await db_api.get("/v1/users/u1/journeys")
    assert answer.json() == {"items": [], "next_cursor": None}
    bad_cursor = await db_api.get("/v1/users/u1/journeys", params={"cursor": "nonsense"})
    assert problem(bad_cursor, 422)["detail"] == "the cursor is not one this API gave"
