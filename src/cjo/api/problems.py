"""Errors as RFC 9457 problem details (`application/problem+json`), never a stack trace.

Errors::

    ApiProblem          raised by routes and dependencies: becomes its problem document
    (anything else)     answered as a bare 500 problem; the trace goes to the log only

Request validation errors (bad JSON, a wrong field) become a 422 problem listing each
field's error; Starlette's own HTTP errors (unknown path, wrong method) keep their status.
A value the database refuses to store (PostgreSQL's "data exception": a NUL character in
a text, a number out of range) came with the request, so it is a 422 too, not a 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from cjo.dsl import Diagnostic
from cjo.runtime.log import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:cjo:problem:"
log = get_logger(__name__)


class FieldError(BaseModel):
    """One failed field: `field` is its dotted place, e.g. `body.events.0.ts`."""

    field: str
    message: str
    type: str


class DiagnosticOut(BaseModel):
    """A DSL diagnostic, as `cjo validate --format json` prints it."""

    severity: str
    code: str
    message: str
    file: str
    line: int
    column: int
    path: str

    @classmethod
    def of(cls, diagnostic: Diagnostic) -> DiagnosticOut:
        return cls.model_validate(diagnostic.to_json())


class Problem(BaseModel):
    """RFC 9457 problem details, with CJO's extension members when they apply."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:cjo:problem:not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no campaign 4c1d9e0b2a7f4e31",
                    "instance": "/v1/campaigns/4c1d9e0b2a7f4e31",
                },
                {
                    "type": "urn:cjo:problem:invalid-request",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": "body.events.0.ts: Field required",
                    "instance": "/v1/events",
                    "errors": [
                        {
                            "field": "body.events.0.ts",
                            "message": "Field required",
                            "type": "missing",
                        }
                    ],
                },
            ]
        },
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    diagnostics: list[DiagnosticOut] | None = None
    errors: list[FieldError] | None = None


class ApiProblem(Exception):
    """A problem a route answers with; `kind` names it (`urn:cjo:problem:<kind>`)."""

    def __init__(
        self, status: int, kind: str, detail: str, *, title: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(
            type=PROBLEM_BASE + kind,
            title=title or HTTPStatus(status).phrase,
            status=status,
            detail=detail,
            **extra,
        )


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, "not-found", detail)


def conflict(detail: str) -> ApiProblem:
    return ApiProblem(409, "conflict", detail)


def too_large(detail: str) -> ApiProblem:
    return ApiProblem(413, "too-large", detail)


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    if instance is not None and problem.instance is None:
        problem = problem.model_copy(update={"instance": instance})
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
    )


def field_errors(errors: Any) -> list[FieldError]:
    return [
        FieldError(
            field=".".join(str(part) for part in error.get("loc", ())),
            message=str(error.get("msg", "")),
            type=str(error.get("type", "")),
        )
        for error in errors
    ]


async def _on_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiProblem)
    return problem_response(error.problem, request.url.path)


async def _on_invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = field_errors(error.errors())
    first = f"{errors[0].field}: {errors[0].message}" if errors else "the request is invalid"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    problem = Problem(
        type=PROBLEM_BASE + "invalid-request",
        title="Invalid request",
        status=422,
        detail=first + more,
        errors=errors,
    )
    return problem_response(problem, request.url.path)


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    phrase = HTTPStatus(error.status_code).phrase
    detail = error.detail if isinstance(error.detail, str) and error.detail != phrase else None
    problem = Problem(title=phrase, status=error.status_code, detail=detail)
    response = problem_response(problem, request.url.path)
    response.headers.update(error.headers or {})
    return response


async def _on_unstorable_value(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DataError)
    # The driver's first line names the problem without the statement or its parameters.
    reason = str(error.orig).split("\n", 1)[0] if error.orig is not None else "invalid value"
    log.info("value refused by the database", path=request.url.path, reason=reason)
    problem = Problem(
        type=PROBLEM_BASE + "invalid-value",
        title="Invalid value",
        status=422,
        detail=f"a value in the request cannot be stored: {reason}",
    )
    return problem_response(problem, request.url.path)


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=error)
    problem = Problem(
        title="Internal Server Error",
        status=500,
        detail="an unexpected error happened; it has been logged",
    )
    return problem_response(problem, request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(DataError, _on_unstorable_value)
    app.add_exception_handler(Exception, _on_unexpected)


# For `responses=` of routes: what their problems look like in the OpenAPI document.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
