"""Validation of a bundle: load, check the schema, then check meaning, reporting everything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cjo.dsl._bundle import Bundle, Entry
from cjo.dsl._check_journey import check_journey
from cjo.dsl._check_resources import (
    check_contact_policy,
    check_risk_policy,
    check_segment,
    check_template_document,
)
from cjo.dsl._diagnostics import Diagnostic, has_errors, sort_diagnostics
from cjo.dsl._documents import DEFAULT_BUSINESS_LINE, DOCUMENT_ADAPTER, Envelope
from cjo.dsl._loader import Document, load_documents
from cjo.dsl._lookup import InMemoryLookup, ResourceLookup
from cjo.dsl._schema_errors import schema_diagnostics

_CHECKS: dict[str, Callable[[Bundle, Entry], None]] = {
    "Journey": check_journey,
    "Segment": check_segment,
    "RiskPolicy": check_risk_policy,
    "Template": check_template_document,
    "ContactPolicy": check_contact_policy,
}


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What `validate` found. `documents` holds every document that passed its schema."""

    file: str
    diagnostics: list[Diagnostic]
    bundle: Bundle

    @property
    def valid(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def documents(self) -> list[Envelope]:
        return [entry.model for entry in self.bundle.entries]


def _identity(data: Any) -> tuple[str, str, str] | None:
    """(kind, business line, name) of a raw document, if it says enough to tell."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    metadata = data["metadata"]
    kind, name = data.get("kind"), metadata.get("name")
    line = metadata.get("businessLine", DEFAULT_BUSINESS_LINE)
    if not all(isinstance(part, str) for part in (kind, name, line)):
        return None
    return (str(kind), str(line), str(name))


def validate(
    text: str | bytes, file: str = "<input>", lookup: ResourceLookup | None = None
) -> ValidationResult:
    """Validate a YAML bundle. Never raises for bad input: every problem is a diagnostic."""
    bundle = Bundle(file, lookup=lookup if lookup is not None else InMemoryLookup())
    documents, problems = load_documents(text, file)
    bundle.diagnostics.extend(problems)
    # Empty documents (`---` alone, or `~`) hold nothing either; a file of them is as empty.
    if all(document.data is None for document in documents) and not problems:
        bundle.diagnostics.append(Diagnostic(file, 1, 1, "E100", "the file holds no documents"))
    seen: dict[tuple[str, str, str], Document] = {}
    for document in documents:
        if document.data is None:
            continue  # an empty document, as left by a trailing '---'
        if not isinstance(document.data, dict):
            line, column = document.position(())
            bundle.diagnostics.append(
                Diagnostic(file, line, column, "E100", "a document must be a mapping")
            )
            continue
        identity = _identity(document.data)
        duplicate = identity is not None and identity in seen
        if identity is not None and identity in seen:
            line, column = document.position(("metadata", "name"))
            first, _ = seen[identity].position(("metadata", "name"))
            kind, business_line, name = identity
            bundle.diagnostics.append(
                Diagnostic(
                    file,
                    line,
                    column,
                    "E111",
                    f"{kind} '{name}' of business line '{business_line}' is already defined "
                    f"on line {first}",
                    "metadata.name",
                )
            )
        elif identity is not None:
            seen[identity] = document
        try:
            model = DOCUMENT_ADAPTER.validate_python(document.data)
        except ValidationError as error:
            bundle.diagnostics.extend(schema_diagnostics(document, error))
            if identity is not None and not duplicate:
                bundle.broken.add(identity)
            continue
        # A duplicate's schema is still checked, but references resolve to the first.
        if not duplicate:
            bundle.entries.append(Entry(document, model))
    for entry in bundle.entries:
        check = _CHECKS.get(entry.kind)
        if check is not None:
            check(bundle, entry)
    bundle.diagnostics[:] = sort_diagnostics(bundle.diagnostics)
    return ValidationResult(file, bundle.diagnostics, bundle)
