"""Events through the API: stored once per id, answered 202, batches bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text

from cjo.store.db import SessionFactory, reading
from tests.api.support import count, problem

TS = "2026-03-01T10:00:00+08:00"


def event(event_id: str, user: str = "u1", name: str = "login", **props: Any) -> dict[str, Any]:
    return {"id": event_id, "user_id": user, "name": name, "props": props, "ts": TS}


async def test_events_are_stored_once_and_duplicates_counted(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    first = await api.post(
        "/v1/events",
        json={"events": [event("e1"), event("e2", amount=5), event("e1")]},
    )
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 2, "duplicates": 1}
    again = await api.post("/v1/events", json={"events": [event("e2"), event("e3")]})
    assert again.json() == {"accepted": 1, "duplicates": 1}
    async with reading(sessions) as connection:
        stored = await connection.execute(
            text("SELECT client_id, props FROM events ORDER BY client_id")
        )
        assert [tuple(row) for row in stored] == [("e1", {}), ("e2", {"amount": 5}), ("e3", {})]


async def test_event_batches_are_bounded_and_checked(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    oversized = {"events": [event(f"e{n}") for n in range(1001)]}
    body = problem(await api.post("/v1/events", json=oversized), 413)
    assert body["type"] == "urn:cjo:problem:too-large" and "1001" in body["detail"]
    malformed = await api.post(
        "/v1/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert problem(malformed, 422)["errors"][0]["type"] == "json_invalid"
    nameless = await api.post("/v1/events", json={"events": [{"id": "e1", "user_id": "u1"}]})
    fields = {error["field"] for error in problem(nameless, 422)["errors"]}
    assert fields == {"body.events.0.name", "body.events.0.ts"}
    assert await count(sessions, "events") == 0  # none of these stored anything


async def test_a_body_over_the_limit_is_refused_before_parsing(api: httpx.AsyncClient) -> None:
    huge = b'{"events": [' + b" " * (5 * 1024 * 1024) + b"]}"
    answer = await api.post(
        "/v1/events", content=huge, headers={"content-type": "application/json"}
    )
    assert "limit" in problem(answer, 413)["detail"]


async def test_a_streamed_body_is_cut_off_at_the_limit(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(5):
            yield b" " * (1024 * 1024)
        yield b"]}"

    answer = await api.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in answer.request.headers  # sent chunked: counted as read
    assert "over" in problem(answer, 413)["detail"]


async def test_events_need_temporal_to_be_taken(db_api: httpx.AsyncClient) -> None:
    """Without Temporal they could be stored but never routed: refuse them whole."""
    answer = await db_api.post("/v1/events", json={"events": [event("e1")]})
    assert problem(answer, 503)["type"] == "urn:cjo:problem:unavailable"
