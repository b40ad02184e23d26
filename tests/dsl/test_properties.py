"""Properties: validation answers every input with diagnostics, and compilation is deterministic."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cjo.dsl import KINDS, Diagnostic, compile_bundle, validate
from cjo.dsl._loader import load_documents
from tests.dsl.test_compile import BUNDLE
from tests.support import registered_lookup

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
SEEDS: list[str] = [BUNDLE, *(path.read_text(encoding="utf-8") for path in EXAMPLES)]

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["${ user.name }", "${ steps.x.outcome", "3d", "P1W", "21:00", "end", "sms"]),
)
yaml_data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=12), children, max_size=6),
    ),
    max_leaves=40,
)


def _assert_answered(text: str | bytes) -> None:
    result = validate(text, "fuzz.yaml", registered_lookup())
    assert all(isinstance(d, Diagnostic) for d in result.diagnostics)
    if not result.valid:
        assert any(d.is_error for d in result.diagnostics)
    for diagnostic in result.diagnostics:
        assert diagnostic.line >= 1 and diagnostic.column >= 1


@PROPERTY_SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text_gets_diagnostics_or_success(text: str) -> None:
    _assert_answered(text)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_get_diagnostics_or_success(data: bytes) -> None:
    _assert_answered(data)


@PROPERTY_SETTINGS
@given(yaml_data)
def test_arbitrary_yaml_data_gets_diagnostics_or_success(data: Any) -> None:
    _assert_answered(yaml.safe_dump(data, allow_unicode=True))


@PROPERTY_SETTINGS
@given(st.sampled_from(KINDS), st.text(max_size=20), yaml_data)
def test_arbitrary_documents_of_every_kind_get_diagnostics(kind: str, name: str, spec: Any) -> None:
    document = {"apiVersion": "cjo/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    _assert_answered(yaml.safe_dump(document, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in node.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(node)]


@PROPERTY_SETTINGS
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False), yaml_data, st.booleans())
def test_mutated_valid_bundles_get_diagnostics_or_success(
    seed: str, rng: random.Random, replacement: Any, delete: bool
) -> None:
    """Real bundles with one subtree replaced or removed reach the deep checks."""
    documents, _ = load_documents(seed)
    data = [document.data for document in documents]
    target = rng.randrange(len(data))
    paths = [p for p in _paths(data[target]) if p]
    path = rng.choice(paths)
    if delete and isinstance(path[-1], str):
        parent = data[target]
        for part in path[:-1]:
            parent = parent[part]
        parent.pop(path[-1], None)
    else:
        data[target] = _replace(data[target], path, replacement)
    _assert_answered(yaml.safe_dump_all(data, allow_unicode=True))


def _shuffled(node: Any, rng: random.Random) -> Any:
    if isinstance(node, dict):
        items = list(node.items())
        rng.shuffle(items)
        return {key: _shuffled(value, rng) for key, value in items}
    if isinstance(node, list):
        return [_shuffled(value, rng) for value in node]
    return node


@PROPERTY_SETTINGS
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False), st.booleans())
def test_compilation_is_deterministic(seed: str, rng: random.Random, flow: bool) -> None:
    """Same meaning, any key order and any YAML style: the same plans, byte for byte."""
    lookup = registered_lookup()
    compiled = compile_bundle(seed, "seed.yaml", lookup)
    expected = {name: plan.model_dump_json() for name, plan in compiled.plans.items()}
    documents, _ = load_documents(seed)
    reordered = [_shuffled(document.data, rng) for document in documents]
    text = yaml.safe_dump_all(
        reordered, allow_unicode=True, sort_keys=False, default_flow_style=flow
    )
    recompiled = compile_bundle(text, "reordered.yaml", lookup)
    again = {name: plan.model_dump_json() for name, plan in recompiled.plans.items()}
    assert again == expected
