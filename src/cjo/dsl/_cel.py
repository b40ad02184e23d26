"""CEL expressions in the DSL: static checks at validation time, evaluation at run time.

The `cel` package (cel-rust underneath) parses but does not type-check, so "unknown variable"
and "unknown function" are decided here from `Program.variables()` / `Program.functions()`,
with the small lexer in `_cel_lexer` to place each problem and to tell apart names the
program's reference lists blur together (macro-bound variables, namespaced calls).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel
from cel import stdlib

from cjo.dsl._cel_lexer import (
    _IDENT,
    _MACRO_ARITY,
    _STRING,
    MAX_LENGTH,
    MAX_OPERATORS,
    _Scan,
    _Token,
    _tokenize,
    _too_big,
)
from cjo.dsl._diagnostics import did_you_mean

__all__ = [
    "KNOWN_FUNCTIONS",
    "MAX_LENGTH",
    "MAX_OPERATORS",
    "ROOTS",
    "CelProblem",
    "check_expression",
    "compile_program",
    "evaluate",
    "expression_of",
    "fields_referenced",
    "new_context",
    "steps_referenced",
]

ROOTS: frozenset[str] = frozenset({"user", "trigger", "event", "steps", "journey", "now"})

# Every name here was checked by executing it against cel 0.10 (see tests/dsl/test_cel.py).
# The optional accessors are listed because `first()`/`last()` return optionals, which are
# useless without them.
_NATIVE_FUNCTIONS: frozenset[str] = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "type",
        "dyn",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
        "hasValue",
        "value",
        "orValue",
        "or",
        "optional.of",
        "optional.none",
        "optional.ofNonZeroValue",
    }
)

# Only the un-namespaced stdlib extensions are enabled; namespaced ones (math.*, sets.*, ...)
# stay unknown so journeys do not come to depend on cel-go extensions we might not keep.
_RUNTIME_LIBRARIES: tuple[str, ...] = ("core", "strings", "lists")
_EXTENSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: function
    for library in _RUNTIME_LIBRARIES
    for name, function in stdlib.EXTENSIONS[library].items()
    if "." not in name
}

KNOWN_FUNCTIONS: frozenset[str] = _NATIVE_FUNCTIONS | frozenset(_EXTENSION_FUNCTIONS)

# cel-rust resolves bare type names (`type(x) == int`) as identifiers, so they show up in
# `variables()` although they are always defined.
_TYPE_NAMES: frozenset[str] = frozenset(
    {"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint"}
)

_MAX_REASON = 300

_FUNCTION_NAME_RE = re.compile(r"\.?[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_CEL_ERROR_RE = re.compile(r"ERROR: <input>:(\d+):(\d+): ?(.*)")
_CEL_INNER_MSG_RE = re.compile(r'msg: "([^"]*)"')
_EXPRESSION_RE = re.compile(r"\$\{(.*)\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CelProblem:
    """Why an expression is rejected. `offset` is 0-based into the expression source."""

    code: str
    message: str
    offset: int | None


def _problem_from_compile_error(source: str, error: BaseException) -> CelProblem:
    text = str(error)
    # The message repeats the source, which may itself contain "ERROR: <input>:...".
    prefix = f"Failed to parse expression '{source}': "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    match = _CEL_ERROR_RE.search(text)
    if match is None:
        reason = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return CelProblem("E210", f"does not compile: {_shorten(reason or repr(error))}", None)
    line, column = int(match.group(1)), int(match.group(2))
    reason = match.group(3).strip()
    inner = _CEL_INNER_MSG_RE.search(reason)
    if inner and reason.startswith("Syntax error: OtherError"):
        # cel-rust leaks a Rust Debug dump for some errors; its `msg` is the readable part.
        reason = f"Syntax error: {inner.group(1)}"
    return CelProblem(
        "E210",
        f"does not compile: {line}:{column}: {_shorten(reason)}",
        _offset_of(source, line, column),
    )


def _shorten(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


def _offset_of(source: str, line: int, column: int) -> int | None:
    """CEL counts lines by '\\n' only and columns in code points, as Python indexes str."""
    lines = source.split("\n")
    if line < 1 or line > len(lines) or column < 1:
        return None
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    return min(offset, len(source))


_LEADING_DOT_HINT = " (a leading '.' is not supported)"


def _macro_hint(name: str) -> str:
    return f" ({name} is a macro: write list.{name}(x, <expression using x>))"


def _unknown_names(
    program: cel.Program, tokens: list[_Token], roots: frozenset[str]
) -> list[CelProblem]:
    scan = _Scan(tokens, roots)
    known = sorted(KNOWN_FUNCTIONS)
    problems: list[CelProblem] = []
    reported: set[str] = set()
    offset: int | None
    for dotted, start in scan.namespaced_calls:
        if dotted in KNOWN_FUNCTIONS or dotted in reported:
            continue
        reported.add(dotted)
        # Suggesting a bare name for a namespaced one misleads ('math.greatest' is not
        # 'matches'), so only other namespaced names are offered.
        hint = did_you_mean(dotted, [name for name in known if "." in name])
        message = f"unknown function '{dotted}'{hint or ' (namespaced extensions are not enabled)'}"
        problems.append(CelProblem("E211", message, start))
    for name in program.variables():
        if name in roots or name in _TYPE_NAMES:
            continue
        if name in scan.free_variables:
            offset = scan.free_variables[name]
        elif name in scan.bound_names or name in scan.namespace_roots:
            continue
        else:
            offset = scan.first_seen.get(name)
        hint = _LEADING_DOT_HINT if name.startswith(".") else did_you_mean(name, sorted(roots))
        problems.append(CelProblem("E211", f"unknown variable '{name}'{hint}", offset))
    for function in program.functions():
        # Operator overloads (`_+_`, `!_`, `@in`, ...) are never identifiers.
        if not _FUNCTION_NAME_RE.fullmatch(function) or function in KNOWN_FUNCTIONS:
            continue
        if function in scan.plain_calls:
            offset = scan.plain_calls[function]
        elif function in scan.namespaced_last:
            continue
        else:
            offset = scan.first_seen.get(function)
        if function.startswith("."):
            hint = _LEADING_DOT_HINT
        elif function in _MACRO_ARITY:
            hint = _macro_hint(function)
        else:
            hint = did_you_mean(function, known)
        problems.append(CelProblem("E211", f"unknown function '{function}'{hint}", offset))
    return problems


def check_expression(source: str, roots: frozenset[str] = ROOTS) -> list[CelProblem]:
    """Problems that stop `source` from being a valid DSL expression; [] when it is fine.

    Never raises: validation must report on any input, however mangled.
    """
    if not isinstance(source, str) or not source.strip():
        return [CelProblem("E210", "expression is empty", None)]
    too_big, tokens = _too_big(source)
    if too_big is not None:
        return [CelProblem("E210", too_big, None)]
    try:
        program = cel.compile(source)
    except Exception as error:
        return [_problem_from_compile_error(source, error)]
    except BaseException as error:
        # pyo3 turns a Rust panic into PanicException, a BaseException; that is a bad
        # expression, whereas KeyboardInterrupt and friends must still propagate.
        if type(error).__name__ != "PanicException":
            raise
        return [_problem_from_compile_error(source, error)]
    problems = _unknown_names(program, tokens, roots)
    return sorted(problems, key=lambda p: (p.offset is None, p.offset or 0, p.message))


def steps_referenced(source: str) -> list[tuple[str, int]]:
    """Each `steps.<id>` / `steps["<id>"]` in `source`, in order, with the id's offset.

    Every occurrence is listed (not just the first), so each can be reported where it is.
    """
    if not isinstance(source, str):
        return []
    tokens = _tokenize(source)
    scan = _Scan(tokens, ROOTS)
    found: list[tuple[str, int]] = []
    for index, token in enumerate(tokens):
        if token.text != "steps" or not scan.is_root(index) or scan.is_bound(index):
            continue
        if index + 2 >= len(tokens):
            continue
        following = tokens[index + 2]
        if scan.is_punct(index + 1, ".") and following.kind == _IDENT:
            found.append((following.text, following.start))
        elif (
            scan.is_punct(index + 1, "[")
            and following.kind == _STRING
            and scan.is_punct(index + 3, "]")
        ):
            found.append((following.body, following.body_start))
    return found


# The fields each root has (dsl-v1, "Expression"); data maps below them take any key.
ROOT_FIELDS: dict[str, frozenset[str]] = {
    "user": frozenset(
        {
            "id",
            "name",
            "phone",
            "email",
            "locale",
            "timezone",
            "birthday",
            "created_at",
            "lifecycle",
            "tags",
            "attrs",
            "addresses",
            "consents",
        }
    ),
    "trigger": frozenset({"name", "props", "ts"}),
    "event": frozenset({"name", "props", "ts"}),
    "journey": frozenset({"name", "version"}),
    "steps": frozenset({"outcome", "result", "event"}),
}


def fields_referenced(source: str) -> list[tuple[str, str, int]]:
    """Each `user.<field>`, `trigger.<field>`, ..., `steps.<id>.<field>` with the field's offset.

    The first element names the root (`steps` for `steps.<id>.<field>`).
    """
    if not isinstance(source, str):
        return []
    tokens = _tokenize(source)
    scan = _Scan(tokens, ROOTS)
    found: list[tuple[str, str, int]] = []
    for index, token in enumerate(tokens):
        if token.text not in ROOT_FIELDS or not scan.is_root(index) or scan.is_bound(index):
            continue
        at = index
        if token.text == "steps":
            # Skip the step id: `steps.<id>` or `steps["<id>"]`.
            if scan.is_punct(at + 1, ".") and at + 2 < len(tokens):
                at += 2
            elif scan.is_punct(at + 1, "[") and scan.is_punct(at + 3, "]"):
                at += 3
            else:
                continue
        if scan.is_punct(at + 1, ".") and at + 2 < len(tokens) and tokens[at + 2].kind == _IDENT:
            field = tokens[at + 2]
            # `steps.x.outcome()` would be a call, not a field; leave calls to the compiler.
            if not scan.is_punct(at + 3, "("):
                found.append((token.text, field.text, field.start))
    return found


def expression_of(value: object) -> str | None:
    """The expression inside a `${ expr }` string (stripped, possibly ''), else None."""
    if not isinstance(value, str):
        return None
    match = _EXPRESSION_RE.fullmatch(value)
    return match.group(1).strip() if match else None


@functools.lru_cache(maxsize=1024)
def compile_program(source: str) -> cel.Program:
    """Compile once per distinct source; raises ValueError when it does not compile."""
    too_big, _ = _too_big(source)
    if too_big is not None:
        # Refuse rather than let CEL overflow the native stack and kill the worker.
        raise ValueError(too_big)
    return cel.compile(source)


def new_context(variables: Mapping[str, Any]) -> cel.Context:
    """A context with the enabled stdlib extensions registered and `variables` bound."""
    context = cel.Context()
    for name, function in _EXTENSION_FUNCTIONS.items():
        context.add_function(name, function)
    for name, value in variables.items():
        context.add_variable(name, value)
    return context


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate `source`; CEL's own errors (RuntimeError, TypeError, KeyError...) propagate."""
    return compile_program(source).execute(new_context(variables))
