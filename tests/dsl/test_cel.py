from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cjo.dsl._cel import (
    KNOWN_FUNCTIONS,
    MAX_LENGTH,
    MAX_OPERATORS,
    ROOTS,
    CelProblem,
    check_expression,
    compile_program,
    evaluate,
    expression_of,
    new_context,
    steps_referenced,
)

# Hypothesis's example database would write .hypothesis/ into the repo; examples are cheap.
fuzz = settings(database=None, deadline=None, max_examples=300)


GOOD = [
    "event.props.tier != 'basic'",
    "has(user.attrs.x) && user.attrs.aum >= 50000",
    "user.tags.exists(t, t == 'vip')",
    "steps.risk.outcome == 'pass'",
    "now - user.created_at > duration('720h')",
    "user.name.lowerAscii() == 'li'",
    "trigger.name == 'card_issued' && size(trigger.props) > 0",
    "journey.name + '/' + string(journey.version)",
    "user.lifecycle in ['dormant', 'churned']",
    "user.consents.sms == true && user.phone.startsWith('+86')",
    "steps['risk'].result.score < 0.5",
    "user.tags.all(t, t != 'blocked') && user.tags.exists_one(t, t == 'vip')",
    "user.tags.map(t, t.upperAscii()).filter(u, u.size() > 2).size() > 0",
    "[1, 2, 3].map(n, n > 1, n * 2) == [4, 6]",
    "user.tags.exists(t, user.attrs.exists(k, k == t))",
    "type(user.attrs.aum) == int || type(user.attrs.aum) == double",
    "int(user.attrs.aum) % 2 == 0 ? 'even' : 'odd'",
    "user.tags.first().orValue('none') != 'none'",
    "optional.of(user.name).hasValue()",
    "user.name == 'li' // trailing comment",
    "user.name == 'math.greatest(1, 2) usr x'",
    "r'\\d+' != '' && b'\\xff' != b''",
    "'''multi\nline''' != \"\"",
    "user.created_at.getHours() >= 9 && now.getDayOfWeek() != 0",
]


@pytest.mark.parametrize("source", GOOD)
def test_good_expressions_have_no_problems(source: str) -> None:
    assert check_expression(source) == []


@pytest.mark.parametrize(
    ("source", "offset", "position"),
    [
        ("user.x >", 8, "1:9"),
        ("user.x == (1", 12, "1:13"),
        ("user.name ==\n  'a' 'b'", 19, "2:7"),
        ("'😀😀' >", 6, "1:7"),
        ("has(user)", 4, "1:5"),
        ("a\r\nb", 3, "2:1"),
    ],
)
def test_syntax_error_reports_cel_position_and_offset(
    source: str, offset: int, position: str
) -> None:
    [problem] = check_expression(source)
    assert problem.code == "E210"
    assert problem.offset == offset
    assert f": {position}: " in problem.message
    # The reason, not CEL's caret drawing or the echoed source.
    assert "\n" not in problem.message
    assert "|" not in problem.message.split(position, 1)[1].split("expecting", 1)[0]
    assert "Failed to parse" not in problem.message


def test_syntax_error_reason_is_readable() -> None:
    [problem] = check_expression("user.x >")
    assert problem.message.startswith("does not compile: 1:9: Syntax error: mismatched input")
    [problem] = check_expression("(" * 120 + "1" + ")" * 120)
    assert problem.message == "does not compile: 1:97: Syntax error: Recursion limit of 96 exceeded"


def test_source_echoing_an_error_is_not_mistaken_for_the_error() -> None:
    [problem] = check_expression("x ERROR: <input>:5:5: fake")
    assert ": 1:3: " in problem.message
    assert problem.offset == 2


@pytest.mark.parametrize("source", ["", "   ", "\n\t", None, 42, b"user"])
def test_empty_or_not_a_string(source: Any) -> None:
    assert check_expression(source) == [CelProblem("E210", "expression is empty", None)]


def test_lone_surrogate_does_not_compile() -> None:
    [problem] = check_expression("user.name == '\ud800'")
    assert problem.code == "E210"


def test_unknown_root_with_suggestion() -> None:
    assert check_expression("usr.name == 'li'") == [
        CelProblem("E211", "unknown variable 'usr' (did you mean 'user'?)", 0)
    ]


def test_unknown_root_offset_skips_strings_and_members() -> None:
    source = "'usr' + user.usr + usr.name"
    [problem] = check_expression(source)
    assert problem.offset == source.rindex("usr.name")


def test_unknown_root_without_suggestion() -> None:
    assert check_expression("1 < zzz") == [CelProblem("E211", "unknown variable 'zzz'", 4)]


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        (".user.name == 'li'", "unknown variable '.user'", 0),
        ("1 < .now", "unknown variable '.now'", 4),
        ("[1].exists(x, .x > 0)", "unknown variable '.x'", 14),
        (".optional.of(1).hasValue()", "unknown variable '.optional'", 0),
        (".size([1]) > 0", "unknown function '.size'", 0),
    ],
)
def test_leading_dot_is_unknown(source: str, message: str, offset: int) -> None:
    # cel-rust compiles `.user` (root scope) but never resolves it at run time.
    assert check_expression(source) == [
        CelProblem("E211", message + " (a leading '.' is not supported)", offset)
    ]
    with pytest.raises(RuntimeError, match="Undefined variable or function"):
        evaluate(source, {"user": {"name": "li"}, "now": 2})


def test_roots_can_be_narrowed() -> None:
    roots = frozenset({"user"})
    assert check_expression("event.name == 'x'", roots) == [
        CelProblem("E211", "unknown variable 'event'", 0)
    ]
    assert check_expression("user.name == 'x'", roots) == []
    assert ROOTS == {"user", "trigger", "event", "steps", "journey", "now"}


def test_several_problems_are_sorted_by_offset() -> None:
    problems = check_expression("foo(usr) && user.name.lower() == evnt")
    assert [(p.code, p.offset) for p in problems] == [
        ("E211", 0),
        ("E211", 4),
        ("E211", 22),
        ("E211", 33),
    ]
    assert problems[0].message == "unknown function 'foo'"
    assert problems[3].message == "unknown variable 'evnt' (did you mean 'event'?)"


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        (
            "user.name.lower() == 'li'",
            "unknown function 'lower' (did you mean 'lowerAscii'?)",
            10,
        ),
        ("lower(user.name) == 'li'", "unknown function 'lower' (did you mean 'lowerAscii'?)", 0),
        (
            "'size(x)' != '' && sizee(user.tags) > 0",
            "unknown function 'sizee' (did you mean 'size'?)",
            19,
        ),
        ("user.created_at.getTimezone() == 'UTC'", "unknown function 'getTimezone'", 16),
    ],
)
def test_unknown_function(source: str, message: str, offset: int) -> None:
    assert check_expression(source) == [CelProblem("E211", message, offset)]


@pytest.mark.parametrize(
    "source",
    [
        "math.greatest(1, 2) > 0",
        "sets.contains([1], [1])",
        "base64.encode(b'x') != ''",
        "lists.range(3).size() == 3",
        "strings.quote('a') != ''",
        "math.abs(-1) == 1",
    ],
)
def test_namespaced_extensions_are_unknown_functions(source: str) -> None:
    dotted = source.split("(", 1)[0]
    assert check_expression(source) == [
        CelProblem(
            "E211", f"unknown function '{dotted}' (namespaced extensions are not enabled)", 0
        )
    ]


def test_namespaced_typo_suggests_a_namespaced_function() -> None:
    assert check_expression("optional.off(1).hasValue()") == [
        CelProblem("E211", "unknown function 'optional.off' (did you mean 'optional.of'?)", 0)
    ]


def test_namespace_used_as_a_value_is_an_unknown_variable() -> None:
    assert check_expression("math.pi > 3") == [CelProblem("E211", "unknown variable 'math'", 0)]


@pytest.mark.parametrize(
    "source",
    [
        "[1].exists(x, x > 0)",
        "user.tags.all(t, t != '')",
        "user.tags.exists_one(t, t == 'vip')",
        "user.tags.map(t, t + '!').filter(u, u != '')",
        "user.tags.map(t, t != '', t + '!') == []",
        "user.tags.exists(user, user == 'vip')",
        "user.tags.exists(t, [t].all(u, u == t))",
    ],
)
def test_macro_bound_variables_are_not_reported(source: str) -> None:
    assert check_expression(source) == []


def test_free_variable_next_to_a_macro_is_reported() -> None:
    assert check_expression("[1].exists(x, x > y)") == [
        CelProblem("E211", "unknown variable 'y'", 18)
    ]


def test_bound_name_used_outside_its_macro_is_reported() -> None:
    source = "[1].exists(x, x > 0) && x"
    assert check_expression(source) == [CelProblem("E211", "unknown variable 'x'", 24)]


def test_macro_with_wrong_arity_is_an_unknown_function() -> None:
    problems = check_expression("user.tags.exists(t, t == 'a', t)")
    assert problems[0] == CelProblem(
        "E211",
        "unknown function 'exists' (exists is a macro: write list.exists(x, <expression using x>))",
        10,
    )
    # With the wrong arity cel-rust does not bind `t` either.
    assert problems[1] == CelProblem("E211", "unknown variable 't'", 17)


def test_too_complex_is_refused_before_cel_sees_it() -> None:
    source = "1" + " + 1" * (MAX_OPERATORS + 1)
    assert check_expression(source) == [
        CelProblem("E210", f"expression is too complex: more than {MAX_OPERATORS} operators", None)
    ]
    with pytest.raises(ValueError, match="too complex"):
        compile_program(source)
    assert check_expression("1" + " + 1" * MAX_OPERATORS) == []


def test_too_long_is_refused() -> None:
    source = "user.name == '" + "x" * MAX_LENGTH + "'"
    assert check_expression(source) == [
        CelProblem("E210", f"expression is too long: more than {MAX_LENGTH} characters", None)
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("steps.risk.outcome == 'pass'", [("risk", 6)]),
        ("steps['kyc'].result", [("kyc", 7)]),
        ('steps["kyc"].result', [("kyc", 7)]),
        (
            "steps.a.outcome == 'x' && steps.b.result > steps.a.result",
            [("a", 6), ("b", 32), ("a", 49)],
        ),
        ("'steps.fake' == user.steps.x", []),
        ("user.tags.exists(steps, steps.x)", []),
        ("steps", []),
        ("steps.", []),
        ("steps[0]", []),
        (".steps.risk", [("risk", 7)]),
        ("steps.risk-x", [("risk", 6)]),
        ("steps.risk.outcome == 'pass' && (", [("risk", 6)]),
    ],
)
def test_steps_referenced(source: str, expected: list[tuple[str, int]]) -> None:
    assert steps_referenced(source) == expected
    for step_id, offset in expected:
        assert source[offset : offset + len(step_id)] == step_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${ user.name }", "user.name"),
        ("${user.name}", "user.name"),
        ("${\n  user.tags.size() > 0\n}", "user.tags.size() > 0"),
        ("${ {'a': 1}.a }", "{'a': 1}.a"),
        ("${}", ""),
        ("user.name", None),
        ("Hello ${user.name}", None),
        ("${user.name} there", None),
        (" ${user.name}", None),
        ("$user.name", None),
        ("{user.name}", None),
        (42, None),
        (None, None),
        (["${x}"], None),
    ],
)
def test_expression_of(value: object, expected: str | None) -> None:
    assert expression_of(value) == expected


# One executable sample per known function, so every name the checker accepts is proven to run.
SAMPLES: dict[str, str] = {
    "size": "size([1, 2]) == 2 && 'ab'.size() == 2",
    "contains": "'abc'.contains('b') && [1, 2].contains(2) && {'k': 1}.contains('k')",
    "startsWith": "'abc'.startsWith('a')",
    "endsWith": "'abc'.endsWith('c')",
    "matches": "'abc'.matches('^a.c$')",
    "int": "int('3') == 3",
    "uint": "uint(3) == 3u",
    "double": "double(1) == 1.0",
    "string": "string(1) == '1'",
    "bytes": "bytes('a') == b'a'",
    "timestamp": "timestamp('2024-01-02T03:04:05.678Z') < timestamp('2025-01-01T00:00:00Z')",
    "duration": "duration('1h') == duration('60m')",
    "type": "type(1) == int",
    "dyn": "dyn(1) == 1",
    "getFullYear": "timestamp('2024-01-02T03:04:05.678Z').getFullYear() == 2024",
    "getMonth": "timestamp('2024-01-02T03:04:05.678Z').getMonth() == 0",
    "getDate": "timestamp('2024-01-02T03:04:05.678Z').getDate() == 2",
    "getDayOfMonth": "timestamp('2024-01-02T03:04:05.678Z').getDayOfMonth() == 1",
    "getDayOfWeek": "timestamp('2024-01-02T03:04:05.678Z').getDayOfWeek() == 2",
    "getDayOfYear": "timestamp('2024-01-02T03:04:05.678Z').getDayOfYear() == 1",
    "getHours": "timestamp('2024-01-02T03:04:05.678Z').getHours() == 3",
    "getMinutes": "timestamp('2024-01-02T03:04:05.678Z').getMinutes() == 4",
    "getSeconds": "timestamp('2024-01-02T03:04:05.678Z').getSeconds() == 5",
    "getMilliseconds": "timestamp('2024-01-02T03:04:05.678Z').getMilliseconds() == 678",
    "hasValue": "[1].first().hasValue() && ![].first().hasValue()",
    "value": "[1, 2].first().value() == 1",
    "orValue": "[].first().orValue(7) == 7",
    "or": "[].first().or(optional.of(3)).value() == 3",
    "optional.of": "optional.of(1).value() == 1",
    "optional.none": "!optional.none().hasValue()",
    "optional.ofNonZeroValue": "!optional.ofNonZeroValue(0).hasValue()",
    "bool": "bool('true')",
    "min": "min([3, 1, 2]) == 1 && min(3, 1) == 1",
    "max": "max([3, 1, 2]) == 3",
    "sum": "sum([1, 2, 3]) == 6",
    "charAt": "'abc'.charAt(1) == 'b'",
    "indexOf": "'abc'.indexOf('c') == 2",
    "lastIndexOf": "'abca'.lastIndexOf('a') == 3",
    "substring": "'abcd'.substring(1, 3) == 'bc'",
    "replace": "'aXa'.replace('a', 'b') == 'bXb'",
    "split": "'a,b'.split(',') == ['a', 'b']",
    "join": "['a', 'b'].join('-') == 'a-b'",
    "lowerAscii": "'AbC'.lowerAscii() == 'abc'",
    "upperAscii": "'AbC'.upperAscii() == 'ABC'",
    "trim": "'  a '.trim() == 'a'",
    "reverse": "'ab'.reverse() == 'ba' && [1, 2].reverse() == [2, 1]",
    "distinct": "[1, 1, 2].distinct() == [1, 2]",
    "flatten": "[[1], [2, 3]].flatten() == [1, 2, 3]",
    "slice": "[1, 2, 3].slice(1, 2) == [2]",
    "sort": "[3, 1, 2].sort() == [1, 2, 3]",
    "first": "[1, 2].first().value() == 1",
    "last": "[1, 2].last().value() == 2",
}


def test_every_known_function_has_a_sample() -> None:
    assert set(SAMPLES) == KNOWN_FUNCTIONS


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_known_function_checks_and_runs(name: str) -> None:
    source = SAMPLES[name]
    assert check_expression(source) == []
    assert evaluate(source, {}) is True


def test_evaluate_uses_stdlib_extensions() -> None:
    assert evaluate("'A'.lowerAscii()", {}) == "a"
    assert evaluate("user.tags.map(t, t.upperAscii()).join(',')", {"user": {"tags": ["a", "b"]}})


def test_namespaced_extensions_are_not_registered() -> None:
    with pytest.raises(RuntimeError):
        evaluate("math.greatest(1, 2)", {})


def test_evaluate_spec_expressions() -> None:
    variables = {
        "user": {
            "name": "Li",
            "tags": ["vip"],
            "attrs": {"aum": 60000},
            "created_at": datetime(2025, 1, 1, tzinfo=UTC),
        },
        "event": {"name": "card_issued", "props": {"tier": "gold"}},
        "steps": {"risk": {"outcome": "pass"}},
        "now": datetime(2025, 3, 1, tzinfo=UTC),
    }
    assert evaluate("event.props.tier != 'basic'", variables) is True
    assert evaluate("has(user.attrs.x) && user.attrs.aum >= 50000", variables) is False
    assert evaluate("has(user.attrs.aum) && user.attrs.aum >= 50000.0", variables) is True
    assert evaluate("user.tags.exists(t, t == 'vip')", variables) is True
    assert evaluate("steps.risk.outcome == 'pass'", variables) is True
    assert evaluate("now - user.created_at > duration('720h')", variables) is True
    assert evaluate("user.name.lowerAscii() == 'li'", variables) is True


def test_evaluate_errors_propagate() -> None:
    with pytest.raises(KeyError):
        evaluate("user.attrs.missing", {"user": {"attrs": {}}})
    with pytest.raises(ValueError):
        evaluate("user.x >", {})


def test_compile_program_is_cached() -> None:
    program = compile_program("user.name == 'cached'")
    assert isinstance(program, cel.Program)
    assert compile_program("user.name == 'cached'") is program


def test_new_context_registers_functions_and_variables() -> None:
    context = new_context({"user": {"name": "Li"}})
    assert context.variables == {"user": {"name": "Li"}}
    assert set(context.functions) <= KNOWN_FUNCTIONS
    assert {"lowerAscii", "min", "sort", "first"} <= set(context.functions)
    assert not any("." in name for name in context.functions)


def _assert_well_formed(source: str, problems: list[CelProblem]) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        assert problem.code in {"E210", "E211"}
        assert problem.message
        assert problem.offset is None or 0 <= problem.offset <= len(source)


@fuzz
@given(st.text())
def test_arbitrary_text_never_raises(source: str) -> None:
    _assert_well_formed(source, check_expression(source))
    for step_id, offset in steps_referenced(source):
        assert 0 <= offset <= len(source)
        assert isinstance(step_id, str)
    expression_of(source)


CEL_PIECES = [
    "user", "usr", "steps", "event", "x", "t", "math", "optional", ".", ",", "(", ")", "[", "]",
    "{", "}", ":", "?", "'", '"', "'''", "r'", "b'", "\\", "\n", " ", "//", "+", "-", "!", "==",
    "&&", "||", " in ", "1", "0x1F", "1.5", "2u", "has", "exists", "map", "all", "filter",
    "exists_one", "size", "lowerAscii", "greatest", "of", "${", "😀", "é",
]  # fmt: skip


@fuzz
@given(st.lists(st.sampled_from(CEL_PIECES), max_size=30).map("".join))
def test_cel_like_text_never_raises(source: str) -> None:
    _assert_well_formed(source, check_expression(source))
    steps_referenced(source)
