"""The layering rules of docs/architecture.md: each layer imports only the layers it may.

api/, cli/, simulate/, demo/, worker.py          entry points
    → workflows/ · control/ · delivery/          journeys · the control plane · delivery
    → activities/                                 every side effect of a step
    → store/ → dsl/ → runtime/
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cjo.dsl

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cjo"
ENTRY = frozenset({"api", "cli", "simulate", "demo", "worker", "__main__"})
BASE = frozenset({"store", "dsl", "runtime"})
# What each layer may import besides itself. Entry points may import anything.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "workflows": frozenset({"activities", "steps", "dsl", "runtime"}),
    "control": frozenset({"delivery", "activities", "steps"}) | BASE,
    "delivery": frozenset({"activities", "steps"}) | BASE,
    "activities": frozenset({"steps"}) | BASE,
    "steps": frozenset({"dsl", "runtime"}),
    "store": frozenset({"dsl", "runtime"}),
    "dsl": frozenset({"runtime"}),
    "runtime": frozenset(),
}
# The DSL is pure: it reads the text it is given and nothing else.
DSL_FORBIDDEN = ("temporalio", "sqlmodel", "sqlalchemy", "psycopg", "fastapi", "httpx", "alembic")
# The package root shows the layers: a few modules, the rest in packages.
ROOT_MODULES_AT_MOST = 5
# Capabilities live in subpackages; only shared helpers stand loose in activities/.
LOOSE_ACTIVITY_MODULES_AT_MOST = 12


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "cjo" or len(parts) < 2:
        return None
    head = parts[1]
    if head in ENTRY:
        return "entry"
    return head if head in MAY_IMPORT else None


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
    assert own is not None or module in ("cjo.__init__",), f"{module} belongs to no layer"
    if own is None or own == "entry":
        return
    for imported in _imports(path):
        target = _layer(imported)
        if target is None or target == own:
            continue
        assert target in MAY_IMPORT[own], f"{module} ({own}) may not import {imported} ({target})"


@pytest.mark.parametrize("path", sorted((PACKAGE / "dsl").rglob("*.py")), ids=lambda p: p.name)
def test_dsl_imports_no_io_libraries(path: Path) -> None:
    for imported in _imports(path):
        assert not imported.startswith(DSL_FORBIDDEN), f"{path.name} imports {imported}"


def test_the_package_root_shows_the_layers() -> None:
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= ROOT_MODULES_AT_MOST, modules


def test_activities_are_grouped_by_capability() -> None:
    loose = sorted(path.name for path in (PACKAGE / "activities").glob("*.py"))
    assert len(loose) <= LOOSE_ACTIVITY_MODULES_AT_MOST, loose


def test_dsl_public_surface_is_pinned() -> None:
    assert sorted(cjo.dsl.__all__) == [
        "API_VERSION",
        "ActivityDeclaration",
        "BenefitSpec",
        "CODES",
        "CompileError",
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
        "READ_ONLY_PROFILE_FIELDS",
        "ResourceLookup",
        "RiskPolicySpec",
        "SegmentSpec",
        "Severity",
        "TemplateRenderError",
        "TemplateSpec",
        "ValidationResult",
        "Value",
        "WRITABLE_PROFILE_FIELDS",
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
    for name in cjo.dsl.__all__:
        assert hasattr(cjo.dsl, name)
