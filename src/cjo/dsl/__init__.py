"""The CJO DSL: load, validate and compile journeys and the resources they use.

The public surface is this module and `cjo.dsl.plan` (the compiled Plan's models);
everything else is private. Errors (see `_errors`)::

    DslError
    ├── DslSyntaxError       the text is not a safe, well-formed YAML bundle (E100, E101)
    ├── DslValidationError   the bundle has errors; `.diagnostics` lists every one
    ├── CompileError         compilation was asked of a journey that did not validate
    └── TemplateRenderError  a template failed to compile or render

`validate` never raises for bad input; it returns diagnostics. `compile_bundle` raises
`DslValidationError` (or `DslSyntaxError`) when there is anything to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from cjo.dsl._bundle import Bundle
from cjo.dsl._cel import evaluate as evaluate_expression
from cjo.dsl._compile import compile_journey
from cjo.dsl._diagnostics import CODES, Diagnostic, Severity, has_errors
from cjo.dsl._documents import API_VERSION, DOCUMENT_ADAPTER, KINDS, Envelope, JourneyDocument
from cjo.dsl._errors import (
    CompileError,
    DslError,
    DslSyntaxError,
    DslValidationError,
    TemplateRenderError,
)
from cjo.dsl._journey import READ_ONLY_PROFILE_FIELDS, WRITABLE_PROFILE_FIELDS
from cjo.dsl._lookup import (
    ActivityDeclaration,
    InMemoryLookup,
    PublishedResource,
    ResourceLookup,
    content_hash,
    resource_version,
)
from cjo.dsl._mermaid import mermaid
from cjo.dsl._resources import (
    BenefitSpec,
    ContactPolicySpec,
    RiskPolicySpec,
    SegmentSpec,
    TemplateSpec,
)
from cjo.dsl._schema import json_schema
from cjo.dsl._templates import render as render_template
from cjo.dsl._validate import ValidationResult, validate
from cjo.dsl.plan import Plan, PlanStep, Value

__all__ = [
    "API_VERSION",
    "DOCUMENT_ADAPTER",
    "BenefitSpec",
    "ContactPolicySpec",
    "RiskPolicySpec",
    "SegmentSpec",
    "TemplateSpec",
    "CODES",
    "KINDS",
    "READ_ONLY_PROFILE_FIELDS",
    "WRITABLE_PROFILE_FIELDS",
    "ActivityDeclaration",
    "CompileError",
    "CompiledBundle",
    "Diagnostic",
    "DslError",
    "DslSyntaxError",
    "DslValidationError",
    "Envelope",
    "InMemoryLookup",
    "JourneyDocument",
    "Plan",
    "PlanStep",
    "PublishedResource",
    "ResourceLookup",
    "Severity",
    "TemplateRenderError",
    "ValidationResult",
    "Value",
    "compile_bundle",
    "compile_validated",
    "content_hash",
    "evaluate_expression",
    "json_schema",
    "mermaid",
    "render_template",
    "resource_version",
    "validate",
]


@dataclass(frozen=True, slots=True)
class CompiledBundle:
    """A bundle that validated: its resources, the Plan of each journey, and any warnings."""

    documents: list[Envelope]
    plans: dict[str, Plan]
    diagnostics: list[Diagnostic]
    bundle: Bundle


def compile_bundle(
    text: str | bytes, file: str = "<input>", lookup: ResourceLookup | None = None
) -> CompiledBundle:
    """Validate a bundle and compile each of its journeys, keyed by journey name."""
    return compile_validated(validate(text, file, lookup))


def compile_validated(result: ValidationResult) -> CompiledBundle:
    """Compile each journey of a bundle `validate` has already checked, without checking
    it again; a result with errors raises as `compile_bundle` does."""
    if has_errors(result.diagnostics):
        if any(d.code in ("E100", "E101") for d in result.diagnostics):
            raise DslSyntaxError(result.diagnostics)
        raise DslValidationError(result.diagnostics)
    plans = {
        document.name: compile_journey(result.bundle, document)
        for document in result.documents
        if isinstance(document, JourneyDocument)
    }
    return CompiledBundle(result.documents, plans, result.diagnostics, result.bundle)
