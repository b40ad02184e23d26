"""JSON Schema of the DSL, for editors (the YAML language server) and other tools."""

from __future__ import annotations

from typing import Any

from cjo.dsl._documents import DOCUMENT_ADAPTER

SCHEMA_ID = "https://cjo.example/schema/cjo-v1.schema.json"


def json_schema() -> dict[str, Any]:
    """One schema for any CJO document; `kind` picks the branch."""
    schema = DOCUMENT_ADAPTER.json_schema(by_alias=True, mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "CJO resource (cjo/v1)",
        **schema,
    }
    return schema
