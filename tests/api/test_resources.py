"""Publishing through the API: validate, apply, and the problems of a bad bundle."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

import cjo.dsl
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


class Loads:
    """What one request cost: the queries that loaded published resources (the newest
    version of each, joined to its head) and the validations of a bundle."""

    def __init__(self) -> None:
        self.lookups = 0
        self.validations = 0


@contextmanager
def counting(sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loads]:
    """Counts, without changing them, the SELECTs the database sees on the test's engine
    and the calls of the DSL's `validate` (the real one still runs), wherever CJO calls it."""
    loads = Loads()
    real = cjo.dsl.validate

    def validate(*args: Any, **kwargs: Any) -> cjo.dsl.ValidationResult:
        loads.validations += 1
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("cjo") and getattr(module, "validate", None) is real:
            monkeypatch.setattr(module, "validate", validate)

    def observe(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        flat = " ".join(statement.split())
        if flat.startswith("SELECT") and "FROM resource_versions JOIN resources" in flat:
            loads.lookups += 1

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", observe)
    try:
        yield loads
    finally:
        event.remove(engine, "before_cursor_execute", observe)
        monkeypatch.undo()


@pytest.mark.parametrize(
    ("path", "bundle", "status"),
    [
        ("/v1/resources", (EXAMPLES / "card_activation.yaml").read_text(), 200),
        ("/v1/resources", BAD_SEGMENT, 422),
        ("/v1/resources/validate", (EXAMPLES / "card_activation.yaml").read_text(), 200),
        ("/v1/resources/validate", BAD_SEGMENT, 200),
    ],
    ids=["apply", "apply-invalid", "validate", "validate-invalid"],
)
async def test_a_bundle_is_looked_up_and_validated_once_per_request(
    db_api: httpx.AsyncClient,
    sessions: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    bundle: str,
    status: int,
) -> None:
    # Something published already, so the lookup has rows to load.
    rest = "\n---\n".join((EXAMPLES / "dormant_savers.yaml").read_text().split("\n---\n")[1:])
    assert (await db_api.post("/v1/resources", content=rest, headers=YAML)).status_code == 200
    with counting(sessions, monkeypatch) as loads:
        answer = await db_api.post(path, content=bundle, headers=YAML)
    assert answer.status_code == status, answer.text
    assert (loads.lookups, loads.validations) == (1, 1)
