"""The safe YAML loader: what it refuses (E100, E101), how it reads scalars, where things are."""

from __future__ import annotations

import time
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from cjo.dsl import Diagnostic, Severity, validate
from cjo.dsl._loader import MAX_BYTES, MAX_DEPTH, Document, Position, load_documents

FILE = "input.yaml"

BILLION_LAUGHS = dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)


def load(text: str | bytes) -> tuple[list[Document], list[Diagnostic]]:
    return load_documents(text, FILE)


def refused(text: str | bytes) -> Diagnostic:
    """The one diagnostic of a file that does not load at all."""
    documents, diagnostics = load(text)
    assert documents == []
    assert len(diagnostics) == 1, diagnostics
    diagnostic = diagnostics[0]
    assert diagnostic.file == FILE
    assert diagnostic.severity is Severity.ERROR
    return diagnostic


def where(diagnostic: Diagnostic) -> tuple[str, int, int]:
    return (diagnostic.code, diagnostic.line, diagnostic.column)


def only_data(text: str) -> Any:
    documents, diagnostics = load(text)
    assert diagnostics == []
    assert len(documents) == 1
    return documents[0].data


# --- E101: unsafe or oversized input ----------------------------------------------------------


def test_billion_laughs_is_refused_at_the_first_anchor_without_expanding() -> None:
    started = time.perf_counter()
    diagnostic = refused(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1.0
    assert where(diagnostic) == ("E101", 1, 4)
    assert "anchors and aliases" in diagnostic.message


def test_billion_laughs_through_validate_is_an_e101_diagnostic_not_an_exception() -> None:
    started = time.perf_counter()
    result = validate(BILLION_LAUGHS, FILE)
    assert time.perf_counter() - started < 1.0
    assert not result.valid
    assert [where(d) for d in result.diagnostics] == [("E101", 1, 4)]


def test_an_alias_alone_is_refused_where_it_stands() -> None:
    assert where(refused("a: 1\nb: *a\n")) == ("E101", 2, 4)


@pytest.mark.parametrize(
    ("text", "line", "column", "tag"),
    [
        ('x: !!python/object/apply:os.system ["echo hi"]\n', 1, 4, "python/object/apply:os.system"),
        ("x: !!python/object:collections.OrderedDict {}\n", 1, 4, "python/object:"),
        ("x: !!python/name:os.system ''\n", 1, 4, "python/name:os.system"),
        ("apiVersion: cjo/v1\nspec:\n  ref: !Ref x\n", 3, 8, "!Ref"),
        ("a: !!binary aGk=\n", 1, 4, "binary"),
        ("a: !!set {x: null}\n", 1, 4, "set"),
        ("- !!python/tuple [1, 2]\n", 1, 3, "python/tuple"),
        ("!!python/object/apply:os.system [x]: 1\n", 1, 1, "python/object/apply"),
    ],
)
def test_tags_other_than_the_core_ones_are_refused(
    text: str, line: int, column: int, tag: str
) -> None:
    diagnostic = refused(text)
    assert where(diagnostic) == ("E101", line, column)
    assert tag in diagnostic.message


def test_a_python_tag_through_validate_never_runs_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'x: !!python/object/apply:os.system ["touch {marker}"]\n'
    result = validate(text, FILE)
    assert [where(d) for d in result.diagnostics] == [("E101", 1, 4)]
    assert not marker.exists()


def test_a_file_over_one_mebibyte_is_refused_before_parsing() -> None:
    text = "a: b\n" + "#" * MAX_BYTES + "\n"
    diagnostic = refused(text)
    assert where(diagnostic) == ("E101", 1, 1)
    assert str(MAX_BYTES) in diagnostic.message


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    # 400k CJK characters are 1.2 MB in UTF-8.
    text = "a: " + "新" * 400_000 + "\n"
    assert len(text) < MAX_BYTES
    assert where(refused(text)) == ("E101", 1, 1)
    assert where(refused(text.encode("utf-8"))) == ("E101", 1, 1)


def test_a_file_of_exactly_one_mebibyte_is_loaded() -> None:
    head = "a: b\n#"
    text = head + "x" * (MAX_BYTES - len(head) - 1) + "\n"
    assert len(text.encode("utf-8")) == MAX_BYTES
    documents, diagnostics = load(text)
    assert diagnostics == []
    assert documents[0].data == {"a": "b"}


def _nested(levels: int) -> str:
    """A mapping holding `levels - 1` nested flow sequences: `levels` collections in all."""
    return "a: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n"


def test_nesting_of_64_levels_is_allowed() -> None:
    data = only_data(_nested(MAX_DEPTH))
    depth, node = 1, data["a"]
    while isinstance(node, list):
        depth, node = depth + 1, (node[0] if node else None)
    assert depth == MAX_DEPTH


def test_nesting_deeper_than_64_is_refused_where_it_goes_too_deep() -> None:
    diagnostic = refused(_nested(MAX_DEPTH + 1))
    # `a: ` then 64 brackets: the 65th collection opens at column 3 + 64.
    assert where(diagnostic) == ("E101", 1, 4 + MAX_DEPTH - 1)
    assert "deeper than 64" in diagnostic.message


def test_block_nesting_deeper_than_64_is_refused() -> None:
    lines = [f"{'  ' * level}k{level}:" for level in range(MAX_DEPTH + 1)]
    lines.append(f"{'  ' * (MAX_DEPTH + 1)}leaf")
    diagnostic = refused("\n".join(lines) + "\n")
    # The 65th mapping starts at its first key, `k64`, on line 65.
    assert where(diagnostic) == ("E101", MAX_DEPTH + 1, 2 * MAX_DEPTH + 1)


@pytest.mark.parametrize("levels", [999, 1000, 1001, 200_000])
def test_absurd_nesting_is_e101_quickly_without_recursion_errors(levels: int) -> None:
    # From 1001 flow levels on, libyaml's own limit trips before the builder's; either way
    # the input is too deep, which is E101, not "not YAML".
    started = time.perf_counter()
    diagnostic = refused("[" * levels + "]" * levels)
    assert time.perf_counter() - started < 2.0
    assert diagnostic.code == "E101"
    assert diagnostic.message == f"nesting is deeper than {MAX_DEPTH} levels"


# --- E100: not YAML, or not a mapping ---------------------------------------------------------


def test_invalid_yaml_is_reported_with_the_place_of_the_problem() -> None:
    text = dedent(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata:
          name: broken
            title: indented too far
        """
    )
    diagnostic = refused(text)
    assert where(diagnostic) == ("E100", 5, 10)
    assert diagnostic.message.startswith("not valid YAML: ")


def test_an_unclosed_flow_sequence_is_reported_where_the_parser_gives_up() -> None:
    diagnostic = refused("a: [1, 2\nb: 3\n")
    assert where(diagnostic) == ("E100", 2, 2)
    assert "expected ',' or ']'" in diagnostic.message


def test_invalid_yaml_through_validate() -> None:
    result = validate("a: b\n  c: d: e\n", FILE)
    assert [where(d) for d in result.diagnostics] == [("E100", 2, 4)]
    assert not result.valid


def test_text_that_is_not_utf8_is_e100() -> None:
    diagnostic = refused(b"a: \xff\xfe\n")
    assert where(diagnostic) == ("E100", 1, 1)
    assert "UTF-8" in diagnostic.message


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("- 1\n- 2\n", 1, 1),
        ('"just a string"\n', 1, 1),
        ("42\n", 1, 1),
        ("apiVersion: cjo/v1\nkind: Segment\n---\n- a list\n", 4, 1),
    ],
)
def test_a_document_that_is_not_a_mapping_is_e100(text: str, line: int, column: int) -> None:
    result = validate(text, FILE)
    diagnostics = [d for d in result.diagnostics if d.code == "E100"]
    assert [where(d) for d in diagnostics] == [("E100", line, column)]
    assert diagnostics[0].message == "a document must be a mapping"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n---\n", "~\n"])
def test_a_file_with_no_documents_is_e100(text: str) -> None:
    result = validate(text, FILE)
    assert [where(d) for d in result.diagnostics] == [("E100", 1, 1)]
    assert result.diagnostics[0].message == "the file holds no documents"
    assert not result.valid


def test_a_trailing_empty_document_is_not_an_error() -> None:
    documents, diagnostics = load("a: 1\n---\n")
    assert diagnostics == []
    assert [document.data for document in documents] == [{"a": 1}, None]


# --- Scalars: the YAML 1.2 core schema ------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        ("NO", "NO"),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("Off", "Off"),
        ("y", "y"),
        ("21:00", "21:00"),
        ("1:30:00", "1:30:00"),
        ("2026-12-01", "2026-12-01"),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("0o17", 15),
        ("0x1F", 31),
        ("012", 12),
        ("-7", -7),
        ("+3", 3),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("true", True),
        ("True", True),
        ("FALSE", False),
    ],
)
def test_plain_scalars_resolve_by_the_yaml_1_2_core_schema(plain: str, expected: Any) -> None:
    value = only_data(f"v: {plain}\n")["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_empty_values_are_null_and_infinities_are_floats() -> None:
    data = only_data("a:\nb: .inf\nc: -.Inf\nd: .nan\n")
    assert data["a"] is None
    assert data["b"] == float("inf") and data["c"] == float("-inf")
    assert data["d"] != data["d"]


def test_quoted_scalars_are_always_strings() -> None:
    data = only_data("a: \"0o17\"\nb: '21:00'\nc: \"true\"\nd: '~'\ne: ! 12\n")
    assert data == {"a": "0o17", "b": "21:00", "c": "true", "d": "~", "e": "12"}


def test_core_tags_are_honoured() -> None:
    data = only_data('a: !!str 12\nb: !!int "12"\nc: !!float 1\nd: !!bool "true"\ne: !!null ""\n')
    assert data == {"a": "12", "b": 12, "c": 1.0, "d": True, "e": None}
    assert type(data["c"]) is float


@pytest.mark.parametrize(
    "text",
    ["a: !!int false\n", "a: !!int 1.5\n", "a: !!float true\n", "a: !!bool 1\n", "a: !!null x\n"],
)
def test_a_core_tag_on_a_value_of_another_type_is_e100(text: str) -> None:
    diagnostic = refused(text)
    assert where(diagnostic) == ("E100", 1, 4)
    assert "is not a valid !!" in diagnostic.message


def test_a_collection_tagged_as_the_other_collection_is_e100() -> None:
    assert where(refused("a: !!seq {x: 1}\n")) == ("E100", 1, 4)
    assert where(refused("a: !!map [1]\n")) == ("E100", 1, 4)


# --- Keys -----------------------------------------------------------------------------------


def test_duplicate_keys_are_reported_and_the_rest_is_still_loaded() -> None:
    text = dedent(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-one, name: seg-two}
        spec:
          match: {tag: vip}
          match: {tag: other}
        ---
        apiVersion: cjo/v1
        """
    )
    documents, diagnostics = load(text)
    assert [(where(d), d.path) for d in diagnostics] == [
        (("E110", 3, 27), "metadata.name"),
        (("E110", 6, 3), "spec.match"),
    ]
    assert diagnostics[0].message == "duplicate key 'name' (first on line 3)"
    assert diagnostics[1].message == "duplicate key 'match' (first on line 5)"
    # The first value stands; the second document is still read.
    assert documents[0].data["metadata"] == {"name": "seg-one"}
    assert documents[0].data["spec"] == {"match": {"tag": "vip"}}
    assert documents[1].data == {"apiVersion": "cjo/v1"}


def test_a_duplicated_key_s_value_is_still_checked_for_safety() -> None:
    assert where(refused("a: 1\na: !!python/name:os.system ''\n")) == ("E101", 2, 4)


def test_duplicate_keys_do_not_hide_other_problems_from_validate() -> None:
    text = dedent(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-one}
        spec:
          match: {tag: vip}
          match: {tag: other}
          extra: 1
        """
    )
    result = validate(text, FILE)
    assert [(where(d), d.path) for d in result.diagnostics] == [
        (("E110", 6, 3), "spec.match"),
        (("E110", 7, 3), "spec.extra"),
    ]


def test_a_key_that_is_not_a_scalar_is_reported() -> None:
    documents, diagnostics = load("? [a, b]\n: 1\nc: 2\n")
    assert [(where(d), d.path) for d in diagnostics] == [(("E110", 1, 3), "")]
    assert diagnostics[0].message == "mapping keys must be plain strings"
    assert documents[0].data == {"c": 2}


def test_keys_stay_strings_whatever_they_look_like() -> None:
    assert only_data("1: a\ntrue: b\nnull: c\n21:00: d\n") == {
        "1": "a",
        "true": "b",
        "null": "c",
        "21:00": "d",
    }


# --- Positions ------------------------------------------------------------------------------

POSITIONED = dedent(
    """\
    apiVersion: cjo/v1
    kind: Journey
    metadata: {name: card-activation, title: "新卡激活"}
    spec:
      trigger:
        event: card_issued
        where: "event.props.tier != 'basic'"
      steps:
        - id: welcome
          type: send
        - {id: later, type: wait}
      note: |
        two
        lines
    """
)


def _document() -> Document:
    documents, diagnostics = load(POSITIONED)
    assert diagnostics == []
    return documents[0]


def test_positions_are_recorded_for_values_and_the_keys_that_introduce_them() -> None:
    source = _document().source
    assert source.get(("kind",)) == Position(2, 7, 2, 14, 2, 1, None)
    assert source.get(("spec", "trigger", "event")) == Position(6, 12, 6, 23, 6, 5, None)
    where_ = source.get(("spec", "trigger", "where"))
    assert where_ == Position(7, 12, 7, 41, 7, 5, '"')
    assert where_.single_line_scalar


def test_positions_of_collections_start_where_the_collection_starts() -> None:
    source = _document().source
    # A block mapping starts at its first key; the key that holds it is recorded apart.
    trigger = source.get(("spec", "trigger"))
    assert trigger is not None and (trigger.line, trigger.column) == (6, 5)
    assert (trigger.key_line, trigger.key_column) == (5, 3)
    steps = source.get(("spec", "steps"))
    assert steps is not None and (steps.line, steps.column) == (9, 5)
    step = source.get(("spec", "steps", 0))
    assert step is not None and (step.line, step.column) == (9, 7)
    assert (step.key_line, step.key_column) == (9, 7)  # a list item has no key: itself
    flow = source.get(("spec", "steps", 1))
    assert flow is not None and (flow.line, flow.column) == (11, 7)
    root = source.get(())
    assert root is not None and (root.line, root.column) == (1, 1)


def test_position_points_at_the_value_or_at_the_key() -> None:
    document = _document()
    assert document.position(("metadata", "name")) == (3, 18)
    assert document.position(("metadata", "name"), at_key=True) == (3, 12)
    assert document.position(("metadata", "title")) == (3, 42)
    assert document.position(("spec", "steps", 1, "type")) == (11, 25)
    assert document.position(("spec", "steps", 1, "type"), at_key=True) == (11, 19)


def test_position_of_a_missing_path_falls_back_to_its_nearest_ancestor() -> None:
    document = _document()
    assert document.position(("spec", "steps", 0, "template")) == (9, 7)
    # at_key only applies to the path itself, not to the ancestor standing in for it.
    assert document.position(("spec", "steps", 0, "template"), at_key=True) == (9, 7)
    assert document.position(("nowhere", "at", "all")) == (1, 1)


def test_a_block_scalar_is_not_a_single_line_scalar() -> None:
    note = _document().source.get(("spec", "note"))
    assert note is not None
    assert (note.line, note.column, note.style) == (12, 9, "|")
    assert not note.single_line_scalar


def test_columns_count_characters_not_bytes() -> None:
    documents, _ = load("metadata: {title: 新卡激活, name: x}\n")
    assert documents[0].position(("metadata", "name")) == (1, 31)


def test_each_document_keeps_its_own_index_and_positions() -> None:
    documents, diagnostics = load("a: 1\n---\nb: 2\n---\nc:\n  d: 3\n")
    assert diagnostics == []
    assert [document.index for document in documents] == [0, 1, 2]
    assert documents[1].position(("b",)) == (3, 4)
    assert documents[2].position(("c", "d")) == (6, 6)
    assert all(document.file == FILE for document in documents)
