"""The OpenAPI document is complete: every operation says what it does, shows an example of
what it takes and answers, and documents its errors as problem documents.

The document is read as clients read it (`GET /openapi.json`); the examples in it are
checked against the schemas beside them, so a stale example fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from jsonschema import Draft202012Validator

from cjo.api import create_app
from cjo.api.auth import guarded
from cjo.runtime.settings import Settings
from tests.api.conftest import BASE_URL

PROBLEM_JSON = "application/problem+json"
METHODS = ("get", "put", "post", "patch", "delete")
APP = create_app(settings=Settings(task_queue="openapi-test"))
Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The app's document; `test_the_served_document_is_the_apps` checks clients get it."""
    return APP.openapi()


async def served_document() -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url=BASE_URL) as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        node = document["components"]["schemas"][name]
    return node


def examples_of(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """The examples a media type object shows: its own, else its schema's."""
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [example["value"] for example in media["examples"].values()]
    return schema_examples(document, media.get("schema", {}))


def schema_examples(document: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    """A schema's examples; of an optional body (`anyOf` a model and null), the model's."""
    schema = resolve(document, schema)
    if "examples" in schema:
        return list(schema["examples"])
    if "example" in schema:
        return [schema["example"]]
    return [e for member in schema.get("anyOf", []) for e in schema_examples(document, member)]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The components beside the schema, so its `#/components/...` references resolve.
    return Draft202012Validator({**schema, "components": document["components"]})


def success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (status,) = [status for status in operation["responses"] if status.startswith(("2", "3"))]
    return status, operation["responses"][status]


async def test_the_served_document_is_the_apps() -> None:
    assert await served_document() == APP.openapi()


def test_every_operation_has_a_summary_and_a_description(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if not operation.get("summary") or not operation.get("description")
    ]
    assert not missing, f"without a summary or description: {missing}"
    # FastAPI makes a summary of the function's name when none is given: say it in words.
    routes = [context.original_route for context in iter_route_contexts(APP.routes)]
    documented = [r for r in routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert len(documented) == len(list(operations(document)))
    generated = [f"{sorted(r.methods)} {r.path}" for r in documented if not r.summary]
    assert not generated, f"summaries made from function names: {generated}"


def test_every_request_body_shows_a_valid_example(document: dict[str, Any]) -> None:
    missing, invalid = [], []
    for path, method, operation in operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            name = f"{method.upper()} {path} ({media_type})"
            examples = examples_of(document, media)
            if not examples:
                missing.append(name)
            elif media_type == "application/json":
                check = validator(document, media["schema"])
                invalid += [
                    f"{name}: {error.message}" for e in examples for error in check.iter_errors(e)
                ]
            else:
                invalid += [f"{name}: not text" for e in examples if not isinstance(e, str)]
    assert not missing, f"request bodies without an example: {missing}"
    assert not invalid, f"examples that do not fit their schema: {invalid}"


def test_every_success_answer_shows_a_valid_example(document: dict[str, Any]) -> None:
    missing, invalid = [], []
    for path, method, operation in operations(document):
        status, answer = success(operation)
        # A redirect has no body to show.
        for media_type, media in answer.get("content", {}).items():
            name = f"{method.upper()} {path} {status} ({media_type})"
            examples = examples_of(document, media)
            if not examples:
                missing.append(name)
                continue
            check = validator(document, media["schema"])
            invalid += [
                f"{name}: {error.message}" for e in examples for error in check.iter_errors(e)
            ]
        if not answer.get("content"):
            assert status.startswith("3"), f"{method.upper()} {path} {status} has no content"
    assert not missing, f"answers without an example: {missing}"
    assert not invalid, f"examples that do not fit their schema: {invalid}"


def test_every_operation_documents_its_errors_as_problems(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        name = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = [status for status in responses if status[0] in "45"]
        if path not in ("/healthz", "/readyz"):
            assert any(status.startswith("4") for status in errors), f"{name}: no 4xx"
        for status in errors:
            content = responses[status].get("content", {})
            assert list(content) == [PROBLEM_JSON], f"{name} {status}: {list(content)}"
            assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
        if guarded(path):
            # The guard's own answers, and the credentials it takes.
            assert {"401", "429"} <= set(responses), name
            assert "Retry-After" in responses["429"]["headers"], name
            assert operation.get("security"), f"{name}: no security requirement"
        if "requestBody" in operation:
            assert "413" in responses, f"{name}: a body, but no 413"
    # FastAPI's default 422 model is never sent, so it is not described either.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_problem_examples_are_problems(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    check = validator(document, problem)
    assert problem["examples"]
    for example in problem["examples"]:
        assert not list(check.iter_errors(example)), example
