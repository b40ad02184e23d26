"""Publishing through the API: validate, apply, and the problems of a bad bundle."""

from __future__ import annotations

import httpx

from cjo.store.db import SessionFactory
from tests.api.support import EXAMPLES, YAML, count, problem

SEGMENT = """\
apiVersion: cjo/v1
kind: Segment
metadata:
  name: big-savers
  businessLine: retail
spec:
  match:
    all:
      - {attr: aum, gte: 50000}
"""
# The unknown field sits on line 10, column 3.
BAD_SEGMENT = SEGMENT + "  colour: blue\n"


async def test_apply_publishes_each_document_once(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    bundle = (EXAMPLES / "card_activation.yaml").read_bytes()
    first = await db_api.post("/v1/resources", content=bundle, headers=YAML)
    assert first.status_code == 200, first.text
    applied = first.json()["applied"]
    kinds = sorted({entry["kind"] for entry in applied})
    assert kinds == ["Benefit", "ContactPolicy", "Journey", "RiskPolicy", "Template"]
    journey = next(entry for entry in applied if entry["kind"] == "Journey")
    assert journey == {
        "kind": "Journey",
        "name": "card-activation",
        "business_line": "credit-card",
        "version": journey["version"],
        "revision": 1,
        "changed": True,
    }
    again = await db_api.post("/v1/resources", content=bundle, headers=YAML)
    assert again.status_code == 200
    assert {entry["changed"] for entry in again.json()["applied"]} == {False}
    assert await count(sessions, "resource_versions") == len(applied)


async def test_an_invalid_bundle_is_a_422_problem_with_positions(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    answer = await db_api.post(
        "/v1/resources?file=segments.yaml", content=BAD_SEGMENT, headers=YAML
    )
    body = problem(answer, 422)
    assert body["type"] == "urn:cjo:problem:invalid-bundle"
    assert body["instance"] == "/v1/resources"
    (diagnostic,) = body["diagnostics"]
    assert diagnostic == {
        "severity": "error",
        "code": "E110",
        "message": "unknown field 'colour'",
        "file": "segments.yaml",
        "line": 10,
        "column": 3,
        "path": "spec.colour",
    }
    assert "segments.yaml:10:3" in body["detail"]
    assert await count(sessions, "resources") == 0  # nothing applied


async def test_validate_answers_without_storing(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    good = await db_api.post(
        "/v1/resources/validate", content=SEGMENT, headers={"content-type": "text/plain"}
    )
    assert good.status_code == 200
    assert good.json() == {"valid": True, "diagnostics": []}
    bad = await db_api.post("/v1/resources/validate", content=BAD_SEGMENT, headers=YAML)
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert [(d["code"], d["line"], d["column"]) for d in bad.json()["diagnostics"]] == [
        ("E110", 10, 3)
    ]
    assert await count(sessions, "resources") == 0


async def test_validate_sees_what_is_published(db_api: httpx.AsyncClient) -> None:
    journey_only = (EXAMPLES / "dormant_savers.yaml").read_text().split("\n---\n")[0]
    before = await db_api.post("/v1/resources/validate", content=journey_only, headers=YAML)
    assert before.json()["valid"] is False
    assert "E220" in {d["code"] for d in before.json()["diagnostics"]}
    rest = "\n---\n".join((EXAMPLES / "dormant_savers.yaml").read_text().split("\n---\n")[1:])
    assert (await db_api.post("/v1/resources", content=rest, headers=YAML)).status_code == 200
    after = await db_api.post("/v1/resources/validate", content=journey_only, headers=YAML)
    assert after.json() == {"valid": True, "diagnostics": []}


async def test_bundle_size_and_type_are_checked(db_api: httpx.AsyncClient) -> None:
    oversized = SEGMENT + "#" * (1024 * 1024) + "\n"
    body = problem(await db_api.post("/v1/resources", content=oversized, headers=YAML), 413)
    assert "limit" in body["detail"]
    as_json = await db_api.post(
        "/v1/resources", content=b"{}", headers={"content-type": "application/json"}
    )
    assert problem(as_json, 415)["type"] == "urn:cjo:problem:unsupported-media-type"
