"""Validate and publish YAML bundles (`POST /v1/resources/validate`, `POST /v1/resources`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from cjo.api._limits import MAX_BUNDLE_BYTES
from cjo.api.audit import AuditDep
from cjo.api.auth import Operator, Principal, Viewer
from cjo.api.deps import ResourcesDep
from cjo.api.problems import ApiProblem, DiagnosticOut, not_found, problem_responses, too_large
from cjo.control.resources import CheckedBundle

router = APIRouter(prefix="/v1/resources", tags=["resources"])
YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
_BUNDLE_EXAMPLE = """\
apiVersion: cjo/v1
kind: Segment
metadata:
  name: big-savers
  businessLine: retail
spec:
  match:
    all:
      - attr: aum
        gte: 50000
"""
_YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a YAML bundle: one or more documents separated by `---`",
        "content": {
            kind: {"schema": {"type": "string"}, "example": _BUNDLE_EXAMPLE}
            for kind in sorted(YAML_TYPES)
        },
    }
}
_WARNING_EXAMPLE: dict[str, Any] = {
    "severity": "warning",
    "code": "W203",
    "message": "step 'reminder' is never reached",
    "file": "retail.yaml",
    "line": 41,
    "column": 7,
    "path": "spec.steps[4].id",
}


class ValidateResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"valid": True, "diagnostics": []},
                {
                    "valid": False,
                    "diagnostics": [
                        {
                            "severity": "error",
                            "code": "E220",
                            "message": "unknown Segment 'vip-clients' in business line 'retail'",
                            "file": "<request>",
                            "line": 9,
                            "column": 18,
                            "path": "spec.match.all[0].segment",
                        }
                    ],
                },
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "applied": [
                        {
                            "kind": "Segment",
                            "name": "big-savers",
                            "business_line": "retail",
                            "version": "5b0e1c7d9a2f3e41",
                            "revision": 2,
                            "changed": True,
                        },
                        {
                            "kind": "Journey",
                            "name": "dormant-savers-reactivation",
                            "business_line": "retail",
                            "version": "9f2c4e1a7b3d5c60",
                            "revision": 1,
                            "changed": False,
                        },
                    ],
                    "diagnostics": [_WARNING_EXAMPLE],
                }
            ]
        }
    )

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


@router.post(
    "/validate",
    summary="Validate a YAML bundle",
    openapi_extra=_YAML_BODY,
    responses=problem_responses(404, 413, 415),
)
async def validate_bundle(
    principal: Viewer,
    bundle: BundleDep,
    resources: ResourcesDep,
    file: FileQuery = "<request>",
) -> ValidateResponse:
    """Check a bundle against the DSL and what is published, without storing anything.

    The answer lists every diagnostic; `valid` is false when one is an error. A bundle naming
    a business line the caller does not see answers 404.
    """
    checked = await resources.check(bundle, file)
    _within_scope(principal, checked)
    result = checked.result
    return ValidateResponse(
        valid=result.valid, diagnostics=[DiagnosticOut.of(d) for d in result.diagnostics]
    )


@router.post(
    "",
    summary="Publish a YAML bundle",
    openapi_extra=_YAML_BODY,
    responses=problem_responses(403, 404, 413, 415, 422),
)
async def apply_bundle(
    principal: Operator,
    audit: AuditDep,
    bundle: BundleDep,
    resources: ResourcesDep,
    file: FileQuery = "<request>",
) -> ApplyResponse:
    """Publish each document as a new version unless unchanged; all or nothing.

    A bundle with an error answers 422 with its diagnostics and publishes nothing.
    """
    checked = await resources.check(bundle, file)
    lines = _within_scope(principal, checked)
    audit.target("bundle", file, lines[0] if len(lines) == 1 else None)
    outcome = await resources.apply_checked(checked, actor=principal.id)
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


def _within_scope(principal: Principal, checked: CheckedBundle) -> list[str]:
    """The bundle's business lines; 404 when one is not the caller's.

    Only documents that pass their schema are checked against what is published, so no
    diagnostic can tell of another line's resources once their lines are all the caller's.
    """
    lines = checked.business_lines
    for line in lines:
        if not principal.sees(line):
            raise not_found(f"no business line {line}")
    return lines
