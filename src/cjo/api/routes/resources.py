"""Validate and publish YAML bundles (`POST /v1/resources/validate`, `POST /v1/resources`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from cjo.api._limits import MAX_BUNDLE_BYTES
from cjo.api.audit import AuditDep
from cjo.api.auth import Principal, require
from cjo.api.deps import ResourcesDep
from cjo.api.problems import ApiProblem, DiagnosticOut, not_found, problem_responses, too_large
from cjo.dsl import ValidationResult, validate

router = APIRouter(prefix="/v1/resources", tags=["resources"])
YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
_YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a YAML bundle: one or more documents separated by `---`",
        "content": {kind: {"schema": {"type": "string"}} for kind in sorted(YAML_TYPES)},
    }
}


class ValidateResponse(BaseModel):
    valid: bool
    diagnostics: list[DiagnosticOut]


class AppliedOut(BaseModel):
    kind: str
    name: str
    business_line: str
    version: str
    revision: int
    changed: bool


class ApplyResponse(BaseModel):
    """What was applied, with any warnings (errors answer 422 and apply nothing)."""

    applied: list[AppliedOut]
    diagnostics: list[DiagnosticOut]


async def read_bundle(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # No content type, or curl's default for `--data-binary @file` (a form), is taken as YAML.
    if media_type and media_type not in YAML_TYPES | {"application/x-www-form-urlencoded"}:
        raise ApiProblem(
            415,
            "unsupported-media-type",
            f"send the bundle as application/yaml or text/plain, not {media_type}",
        )
    body = await request.body()
    if len(body) > MAX_BUNDLE_BYTES:
        raise too_large(f"the bundle is {len(body)} bytes; the limit is {MAX_BUNDLE_BYTES}")
    return body


BundleDep = Annotated[bytes, Depends(read_bundle)]
# Shown in the diagnostics, so the sender can tell which of its files they concern.
FileQuery = Annotated[str, Query(max_length=256, description="the file name to report")]


@router.post("/validate", openapi_extra=_YAML_BODY, responses=problem_responses(413, 415))
async def validate_bundle(
    principal: Annotated[Principal, require("viewer")],
    bundle: BundleDep,
    resources: ResourcesDep,
    file: FileQuery = "<request>",
) -> ValidateResponse:
    """Check a bundle against the DSL and what is published, without storing anything."""
    result = validate(bundle, file, await resources.lookup())
    _within_scope(principal, result)
    return ValidateResponse(
        valid=result.valid, diagnostics=[DiagnosticOut.of(d) for d in result.diagnostics]
    )


@router.post("", openapi_extra=_YAML_BODY, responses=problem_responses(413, 415, 422))
async def apply_bundle(
    principal: Annotated[Principal, require("operator")],
    audit: AuditDep,
    bundle: BundleDep,
    resources: ResourcesDep,
    file: FileQuery = "<request>",
) -> ApplyResponse:
    """Publish each document as a new version unless unchanged; all or nothing."""
    lines = _within_scope(principal, validate(bundle, file, await resources.lookup()))
    audit.target("bundle", file, lines[0] if len(lines) == 1 else None)
    outcome = await resources.apply(bundle, file=file, actor=principal.id)
    diagnostics = [DiagnosticOut.of(d) for d in outcome.diagnostics]
    if not outcome.valid:
        errors = [d for d in outcome.diagnostics if d.is_error]
        raise ApiProblem(
            422,
            "invalid-bundle",
            f"{len(errors)} error(s); nothing was applied. First: {errors[0].format_text()}",
            title="Invalid bundle",
            diagnostics=diagnostics,
        )
    applied = [AppliedOut.model_validate(a, from_attributes=True) for a in outcome.applied]
    audit.after(applied)
    audit.detail["applied"] = [f"{a.kind}/{a.business_line}/{a.name}@{a.version}" for a in applied]
    return ApplyResponse(applied=applied, diagnostics=diagnostics)


def _within_scope(principal: Principal, result: ValidationResult) -> list[str]:
    """The bundle's business lines; 404 when one is not the caller's.

    Only documents that pass their schema are checked against what is published, so no
    diagnostic can tell of another line's resources once their lines are all the caller's.
    """
    lines = sorted({document.business_line for document in result.documents})
    for line in lines:
        if not principal.sees(line):
            raise not_found(f"no business line {line}")
    return lines
