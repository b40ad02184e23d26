"""The OpenAPI document: the answers every guarded route shares, described once, here.

Routes document their own problems (`problem_responses(...)` in their decorators: 403 for a
role, 404, 409, ...). What the layers in front of every route answer is added here, so no
route can forget it and the document says what the server does:

- every guarded operation (`/v1/...` but the provider callbacks) may answer 401 (no or a
  bad credential) and 429 (over the principal's rate, with `Retry-After`): the guard
  answers both before the route runs;
- every operation with a request body may answer 413 (the body cap answers it), and one
  with a JSON body 400 when the body cannot be read at all (not UTF-8, say);
- every error is described as what it is, an `application/problem+json` `Problem`: the
  422 too, where FastAPI's default names `HTTPValidationError`, which this API never sends
  (`cjo.api.problems` answers invalid requests as problems).

And it puts the examples back as the models and routes give them: FastAPI drops every
null from the document, examples included, which leaves an example without its required
nullable fields (`"ended_at": null`), one that no longer fits its own schema.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter

from cjo.api.auth import guarded
from cjo.api.problems import PROBLEM_JSON, Problem

PROBLEM_REF = "#/components/schemas/Problem"
_METHODS = frozenset({"get", "put", "post", "patch", "delete"})
# FastAPI's default schemas of a 422, unused once every 422 is a problem.
_DEFAULT_422_SCHEMAS = ("HTTPValidationError", "ValidationError")
_DESCRIPTIONS = {400: "The body cannot be read: it is not UTF-8, or not JSON at all"}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the accepted credentials: a bearer JWT or the `X-API-Key` header",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds until the principal may call again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `/openapi.json`) return the completed document."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document and makes it anew when routes change: complete each
        # document it makes once.
        document = generate()
        if not completed or completed[0] is not document:
            complete(document)
            _restore_examples(app, document)
            completed[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> None:
    """Add the shared answers to every operation of `document`, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _add_problem_schemas(schemas)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            errors = {int(status) for status in responses if status[0] in "45"}
            if guarded(path):
                errors |= {401, 429}
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                errors.add(413)
            if "application/json" in body:
                errors.add(400)
            for status in errors:
                responses[str(status)] = _problem_answer(status, responses.get(str(status)))
            operation["responses"] = dict(sorted(responses.items()))
    if not _uses_default_422(document):
        for name in _DEFAULT_422_SCHEMAS:
            schemas.pop(name, None)


def _problem_answer(status: int, given: dict[str, Any] | None) -> dict[str, Any]:
    """The route's own description of the answer (if any), as a problem document only.

    `problem_responses` names the `Problem` model, which FastAPI also lists under
    `application/json`; errors are only ever sent as `application/problem+json`.
    """
    given = given or {}
    answer: dict[str, Any] = {
        "description": given.get("description")
        or _DESCRIPTIONS.get(status)
        or HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    headers = {**_HEADERS.get(status, {}), **given.get("headers", {})}
    if headers:
        answer["headers"] = headers
    return answer


def _add_problem_schemas(schemas: dict[str, Any]) -> None:
    """`Problem` and the models it refers to, unless a route's `responses=` put them there."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault("Problem", schema)


def _uses_default_422(document: dict[str, Any]) -> bool:
    refs = {f"#/components/schemas/{name}" for name in _DEFAULT_422_SCHEMAS}

    def refers(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("$ref") in refs:
                return True
            return any(refers(value) for value in node.values())
        if isinstance(node, list):
            return any(refers(value) for value in node)
        return False

    # The two refer to each other: only references from outside the pair count.
    outside = {key: value for key, value in document.items() if key != "components"} | {
        "schemas": {
            name: definition
            for name, definition in document["components"]["schemas"].items()
            if name not in _DEFAULT_422_SCHEMAS
        }
    }
    return refers(outside)


def _restore_examples(app: FastAPI, document: dict[str, Any]) -> None:
    """Put back the examples of models (`json_schema_extra`) and of routes' `responses=` and
    `openapi_extra=`, nulls and all."""
    schemas = document["components"]["schemas"]
    by_model: dict[str, list[Any]] = {}
    for route in _api_routes(app):
        operations = document["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is not None:
                _restore_media_examples(route, operation)
        annotations = [route.response_model]
        annotations += [param.field_info.annotation for param in route.dependant.body_params]
        for annotation in annotations:
            if annotation is not None:
                by_model.update(_examples_by_model(annotation))
    for name, schema in schemas.items():
        # With separate input and output schemas, FastAPI names them `<Model>-Input`/`-Output`.
        examples = by_model.get(name.removesuffix("-Input").removesuffix("-Output"))
        if examples is not None and "examples" in schema:
            schema["examples"] = examples


def _api_routes(app: FastAPI) -> list[APIRoute]:
    routes = (context.original_route for context in iter_route_contexts(app.routes))
    return [route for route in routes if isinstance(route, APIRoute) and route.include_in_schema]


def _restore_media_examples(route: APIRoute, operation: dict[str, Any]) -> None:
    for status, answer in route.responses.items():
        documented = operation["responses"].get(str(status), {}).get("content", {})
        _copy_examples(answer.get("content", {}), documented)
    given = (route.openapi_extra or {}).get("requestBody", {}).get("content", {})
    _copy_examples(given, operation.get("requestBody", {}).get("content", {}))


def _copy_examples(given: dict[str, Any], documented: dict[str, Any]) -> None:
    for media_type, media in given.items():
        if media_type in documented and "example" in media:
            documented[media_type]["example"] = media["example"]


def _examples_by_model(annotation: Any) -> dict[str, list[Any]]:
    """The examples of the models `annotation` names, by model name, as pydantic has them."""
    found: dict[str, list[Any]] = {}
    for mode in ("validation", "serialization"):
        schema = TypeAdapter(annotation).json_schema(mode=mode)
        definitions = dict(schema.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            definitions[annotation.__name__] = schema
        for name, definition in definitions.items():
            if "examples" in definition:
                found[name] = definition["examples"]
    return found
