"""The layering rules of docs/architecture: each layer imports only the layers to its right.

`api/`, `worker.py`, `cli.py` → `workflows/` → `activities/` → `store/` → `dsl/` → `runtime/`
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cjo.dsl

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cjo"
LAYERS = ["entry", "workflows", "activities", "store", "dsl", "runtime"]
ENTRY_MODULES = {
    "api",
    "worker",
    "cli",
    "_cli_tokens",
    "_cli_client",
    "demo",
    "dev",
    "simulate",
    "__main__",
    "sandbox",
}
# The DSL is pure: it reads the text it is given and nothing else.
DSL_FORBIDDEN = ("temporalio", "sqlmodel", "sqlalchemy", "psycopg", "fastapi", "httpx", "alembic")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "cjo" or len(parts) < 2:
        return None
    head = parts[1]
    if head in ENTRY_MODULES or head.startswith("_simulate"):
        return "entry"
    return head if head in LAYERS else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(relative.parts), path))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_follow_the_layers(module: str, path: Path) -> None:
    own = _layer(module)
    if own is None:
        return
    for imported in _imports(path):
        target = _layer(imported)
        if target is None or target == own:
            continue
        assert LAYERS.index(target) > LAYERS.index(own), (
            f"{module} ({own}) may not import {imported} ({target})"
        )


@pytest.mark.parametrize("path", sorted((PACKAGE / "dsl").rglob("*.py")), ids=lambda p: p.name)
def test_dsl_imports_no_io_libraries(path: Path) -> None:
    for imported in _imports(path):
        assert not imported.startswith(DSL_FORBIDDEN), f"{path.name} imports {imported}"


def test_dsl_public_surface_is_pinned() -> None:
    assert sorted(cjo.dsl.__all__) == [
        "API_VERSION",
        "ActivityDeclaration",
        "BenefitSpec",
        "CODES",
        "CompiledBundle",
        "ContactPolicySpec",
        "DOCUMENT_ADAPTER",
        "Diagnostic",
        "DslError",
        "DslSyntaxError",
        "DslValidationError",
        "Envelope",
        "InMemoryLookup",
        "JourneyDocument",
        "KINDS",
        "Plan",
        "PlanStep",
        "PublishedResource",
        "ResourceLookup",
        "RiskPolicySpec",
        "SegmentSpec",
        "Severity",
        "TemplateRenderError",
        "TemplateSpec",
        "ValidationResult",
        "Value",
        "compile_bundle",
        "content_hash",
        "evaluate_expression",
        "json_schema",
        "mermaid",
        "render_template",
        "resource_version",
        "validate",
    ]
    for name in cjo.dsl.__all__:
        assert hasattr(cjo.dsl, name)
