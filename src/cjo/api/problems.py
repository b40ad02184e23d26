"""Errors as RFC 9457 problem details (`application/problem+json`), never a stack trace.

Errors::

    ApiProblem          raised by routes and dependencies: becomes its problem document
    (anything else)     answered as a bare 500 problem; the trace goes to the log only

Request validation errors (bad JSON, a wrong field) become a 422 problem listing each
field's error; Starlette's own HTTP errors (unknown path, wrong method) keep their status.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
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

    model_config = ConfigDict(extra="allow")

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
