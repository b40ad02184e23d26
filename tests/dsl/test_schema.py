"""The exported JSON Schema agrees with the validator on the examples and on broken input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cjo.dsl import json_schema
from cjo.dsl._loader import load_documents
from tests.dsl.test_compile import BUNDLE

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _documents(text: str) -> list[dict[str, Any]]:
    # YAML 1.2, as editors read it: PyYAML's 1.1 loader would turn the key `on` into True.
    documents, problems = load_documents(text)
    assert problems == []
    return [document.data for document in documents if document.data is not None]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_every_example(
    validator: jsonschema.Draft202012Validator, example: Path
) -> None:
    for document in _documents(example.read_text(encoding="utf-8")):
        errors = [error.message for error in validator.iter_errors(document)]
        assert errors == [], f"{example.name} {document['kind']}: {errors[:3]}"


def test_schema_accepts_the_test_bundle(validator: jsonschema.Draft202012Validator) -> None:
    for document in _documents(BUNDLE):
        assert list(validator.iter_errors(document)) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("type: grant", "type: grnat"),  # unknown step type
        ("timeout: 3d", "timeout: three days"),  # not a duration
        ("channel: sms\n      template", "chanel: sms\n      template"),  # misspelt field
        ("apiVersion: cjo/v1\nkind: Journey", "apiVersion: cjo/v2\nkind: Journey"),
        ("form: product", "form: marketing"),
        ("stock: 100", "stock: 0"),
    ],
)
def test_schema_rejects_broken_documents(
    validator: jsonschema.Draft202012Validator, old: str, new: str
) -> None:
    assert old in BUNDLE
    documents = _documents(BUNDLE.replace(old, new, 1))
    assert any(list(validator.iter_errors(document)) for document in documents)


def test_schema_has_editor_metadata() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["title"].startswith("CJO")
