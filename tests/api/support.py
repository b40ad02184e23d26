"""Helpers for API tests: publish an example, add customers, read problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from cjo.store.db import SessionFactory, reading

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"content-type": "application/yaml"}


async def publish(http: httpx.AsyncClient, example: str) -> dict[str, Any]:
    """Apply an example bundle; its Journey's entry in the answer."""
    answer = await http.post(
        "/v1/resources", content=(EXAMPLES / example).read_bytes(), headers=YAML
    )
    assert answer.status_code == 200, answer.text
    applied: list[dict[str, Any]] = answer.json()["applied"]
    return next(entry for entry in applied if entry["kind"] == "Journey")


async def add_customer(
    http: httpx.AsyncClient, user_id: str, consents: dict[str, bool] | None = None, **fields: Any
) -> None:
    profile = {
        "name": "李雷",
        "phone": "13800000001",
        "email": f"{user_id}@example.com",
        "timezone": "Asia/Shanghai",
        **fields,
    }
    answer = await http.put(f"/v1/users/{user_id}", json=profile)
    assert answer.status_code == 200, answer.text
    given = {"sms": True, "push": True, "email": True, "inbox": True, **(consents or {})}
    answer = await http.put(
        f"/v1/users/{user_id}/consents", json={"consents": given, "source": "test"}
    )
    assert answer.status_code == 200, answer.text


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The answer's problem document, checked to be one, with the expected status."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and "type" in body
    assert "Traceback" not in answer.text
    return body


async def count(sessions: SessionFactory, table: str) -> int:
    async with reading(sessions) as connection:
        return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def approve(maker: httpx.AsyncClient, checker: httpx.AsyncClient, campaign: str) -> None:
    """Submit the draft as `maker` and approve it as `checker` (another principal)."""
    submitted = await maker.post(f"/v1/campaigns/{campaign}/submit")
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["approvals_required"] == 1, submitted.text
    approved = await checker.post(f"/v1/campaigns/{campaign}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
