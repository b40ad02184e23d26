"""CEL expressions in the DSL: static checks at validation time, evaluation at run time.

The `cel` package (cel-rust underneath) parses but does not type-check, so "unknown variable"
and "unknown function" are decided here from `Program.variables()` / `Program.functions()`,
with a small lexer over the source to place each problem and to tell apart names the
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

# A call `ns.f(...)` on one of these roots is a namespaced function, not a method call on a
# variable; without this, `math.abs(x)` would be reported as the unknown variable 'math'.
_NAMESPACES: frozenset[str] = frozenset(
    {
        name.split(".", 1)[0]
        for library in stdlib.EXTENSIONS.values()
        for name in library
        if "." in name
    }
    | {"optional", "cel"}
)

# Macro name -> allowed argument counts. With any other count cel-rust silently turns the
# macro into an ordinary (undefined) function call, and its "bound" name into a free variable.
_MACRO_ARITY: dict[str, frozenset[int]] = {
    "all": frozenset({2}),
    "exists": frozenset({2}),
    "exists_one": frozenset({2}),
    "filter": frozenset({2}),
    "map": frozenset({2, 3}),
}

# cel-rust parses left-associative chains (`a + b + ...`, `a.b.c...`, `--x`) and evaluates
# them recursively with no depth limit, and overflows the native stack (a segfault, not an
# exception): compiling dies near 20,000 levels on an 8 MiB stack, evaluating near 1,000 on a
# 512 KiB thread stack. Every level costs at least one operator token, so capping operators
# keeps us well clear; real journey expressions use a few dozen.
MAX_OPERATORS = 500
# Compiling is linear but slow (seconds for a few hundred KB); nothing legitimate is this big.
MAX_LENGTH = 100_000

_MAX_REASON = 300

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_FUNCTION_NAME_RE = re.compile(r"\.?[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NUMBER_RE = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?|\.\d+(?:[eE][+-]?\d+)?",
    re.ASCII,
)
_STRING_START_RE = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?('''|\"\"\"|'|\")")
_MULTI_CHAR_OP_RE = re.compile(r"&&|\|\||==|!=|<=|>=")
_OPERATOR_TEXTS: frozenset[str] = frozenset(
    {".", "[", "(", "{", "+", "-", "*", "/", "%", "!", "<", ">", "<=", ">=", "==", "!="}
    | {"&&", "||", "?", "in"}
)
_KEYWORDS: frozenset[str] = frozenset({"true", "false", "null", "in"})
_OPENERS: dict[str, str] = {"(": ")", "[": "]", "{": "}"}
_CEL_ERROR_RE = re.compile(r"ERROR: <input>:(\d+):(\d+): ?(.*)")
_CEL_INNER_MSG_RE = re.compile(r'msg: "([^"]*)"')
_EXPRESSION_RE = re.compile(r"\$\{(.*)\}", re.DOTALL)

_IDENT = "ident"
_NUMBER = "number"
_STRING = "string"
_PUNCT = "punct"


@dataclass(frozen=True, slots=True)
class CelProblem:
    """Why an expression is rejected. `offset` is 0-based into the expression source."""

    code: str
    message: str
    offset: int | None


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int
    # For strings: the text between the quotes, escapes left as written, and where it starts.
    body: str = ""
    body_start: int = 0


def _string_end(source: str, pos: int, quote: str, raw: bool) -> int:
    """Index just past the string whose body starts at `pos`; unterminated runs to the end."""
    n = len(source)
    if len(quote) == 3:
        while pos < n:
            if source.startswith(quote, pos):
                return pos + 3
            pos += 2 if source[pos] == "\\" and not raw else 1
        return n
    while pos < n:
        char = source[pos]
        if char == quote:
            return pos + 1
        if char == "\n":
            return pos
        pos += 2 if char == "\\" and not raw else 1
    return n


def _tokenize(source: str) -> list[_Token]:
    """A forgiving CEL lexer: any text gives tokens, so it is safe on unparsable input."""
    tokens: list[_Token] = []
    n = len(source)
    i = 0
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
            continue
        if source.startswith("//", i):
            newline = source.find("\n", i)
            i = n if newline < 0 else newline
            continue
        match = _STRING_START_RE.match(source, i)
        if match:
            quote = match.group(1)
            raw = "r" in source[i : match.start(1)].lower()
            end = min(_string_end(source, match.end(), quote, raw), n)
            body_end = end - len(quote) if source.endswith(quote, match.end(), end) else end
            body_end = max(body_end, match.end())
            body = source[match.end() : body_end]
            tokens.append(_Token(_STRING, source[i:end], i, body, match.end()))
            i = end
            continue
        match = _IDENT_RE.match(source, i) or _NUMBER_RE.match(source, i)
        if match:
            kind = _IDENT if char.isalpha() or char == "_" else _NUMBER
            tokens.append(_Token(kind, match.group(), i))
            i = match.end()
            continue
        match = _MULTI_CHAR_OP_RE.match(source, i)
        text = match.group() if match else char
        tokens.append(_Token(_PUNCT, text, i))
        i += len(text)
    return tokens


def _too_big(source: str) -> tuple[str | None, list[_Token]]:
    """Why `source` must not reach the CEL parser (None when safe), and its tokens."""
    if len(source) > MAX_LENGTH:
        return f"expression is too long: more than {MAX_LENGTH} characters", []
    tokens = _tokenize(source)
    if sum(1 for token in tokens if token.text in _OPERATOR_TEXTS) > MAX_OPERATORS:
        return f"expression is too complex: more than {MAX_OPERATORS} operators", tokens
    return None, tokens


class _Scan:
    """What the token stream says about each identifier: free, bound, called, namespaced."""

    def __init__(self, tokens: list[_Token], roots: frozenset[str]) -> None:
        self.tokens = tokens
        self.matching = self._match_brackets()
        self.scopes = self._macro_scopes()
        self.bound_names: set[str] = {name for name, _, _ in self.scopes}
        # name -> offset of its first occurrence of each kind
        self.free_variables: dict[str, int] = {}
        self.plain_calls: dict[str, int] = {}
        self.first_seen: dict[str, int] = {}
        self.namespace_roots: set[str] = set()
        self.namespaced_last: set[str] = set()
        self.namespaced_calls: list[tuple[str, int]] = []
        self._classify(roots)

    def _match_brackets(self) -> dict[int, int]:
        matching: dict[int, int] = {}
        stack: list[int] = []
        for index, token in enumerate(self.tokens):
            if token.kind != _PUNCT:
                continue
            if token.text in _OPENERS:
                stack.append(index)
            elif token.text in _OPENERS.values():
                # Mismatched closers are left unpaired rather than guessed at.
                if stack and _OPENERS[self.tokens[stack[-1]].text] == token.text:
                    matching[stack.pop()] = index
        return matching

    def is_punct(self, index: int, text: str) -> bool:
        return (
            0 <= index < len(self.tokens)
            and self.tokens[index].kind == _PUNCT
            and self.tokens[index].text == text
        )

    def _is_ident(self, index: int) -> bool:
        return 0 <= index < len(self.tokens) and self.tokens[index].kind == _IDENT

    def _is_member_dot(self, index: int) -> bool:
        """A '.' after a value selects a member; a leading '.' only qualifies a root name."""
        if not self.is_punct(index, ".") or index == 0:
            return False
        before = self.tokens[index - 1]
        if before.kind == _IDENT:
            return before.text != "in"
        return before.kind in (_NUMBER, _STRING) or before.text in (")", "]", "}")

    def is_root(self, index: int) -> bool:
        """An identifier that names a variable or global function, not a member or keyword."""
        return (
            self._is_ident(index)
            and self.tokens[index].text not in _KEYWORDS
            and not self._is_member_dot(index - 1)
        )

    def _top_level_commas(self, open_index: int, close_index: int) -> list[int]:
        commas: list[int] = []
        index = open_index + 1
        while index < close_index:
            if self.tokens[index].kind == _PUNCT:
                text = self.tokens[index].text
                if text == ",":
                    commas.append(index)
                elif text in _OPENERS and index in self.matching:
                    index = self.matching[index]
            index += 1
        return commas

    def _macro_scopes(self) -> list[tuple[str, int, int]]:
        """(bound name, first token index, end token index) for each well-formed macro call."""
        scopes: list[tuple[str, int, int]] = []
        for index, token in enumerate(self.tokens):
            arities = _MACRO_ARITY.get(token.text)
            if (
                arities is None
                or token.kind != _IDENT
                or not self._is_member_dot(index - 1)
                or not self.is_punct(index + 1, "(")
            ):
                continue
            open_index = index + 1
            close_index = self.matching.get(open_index, len(self.tokens))
            commas = self._top_level_commas(open_index, close_index)
            if len(commas) + 1 not in arities or commas[0] != open_index + 2:
                continue
            if self._is_ident(open_index + 1):
                scopes.append((self.tokens[open_index + 1].text, open_index + 1, close_index))
        return scopes

    def is_bound(self, index: int) -> bool:
        name = self.tokens[index].text
        return any(bound == name and start <= index < end for bound, start, end in self.scopes)

    def _namespaced_call_end(self, index: int) -> int | None:
        """Index of the last name in `ns.a.b(` starting at root `index`, if it is such a call."""
        last = index
        while self.is_punct(last + 1, ".") and self._is_ident(last + 2):
            last += 2
        if last > index and self.is_punct(last + 1, "("):
            return last
        return None

    def _classify(self, roots: frozenset[str]) -> None:
        namespaced_names: set[int] = set()
        for index, token in enumerate(self.tokens):
            if token.kind != _IDENT:
                continue
            self.first_seen.setdefault(token.text, token.start)
            is_call = self.is_punct(index + 1, "(")
            if not self.is_root(index):
                if is_call and index not in namespaced_names:
                    self.plain_calls.setdefault(token.text, token.start)
                continue
            # cel-rust keeps a leading '.' (root scope) in the name and then never resolves
            # it, so `.user` is a name of its own, reported where its dot is.
            name, start = token.text, token.start
            if self.is_punct(index - 1, "."):
                name, start = "." + name, self.tokens[index - 1].start
            if is_call:
                self.plain_calls.setdefault(name, start)
                continue
            if self.is_bound(index) and not name.startswith("."):
                continue
            if token.text in _NAMESPACES and token.text not in roots:
                last = self._namespaced_call_end(index)
                if last is not None:
                    self.namespaced_last.add(self.tokens[last].text)
                    namespaced_names.add(last)
                    if not name.startswith("."):
                        names = (self.tokens[k].text for k in range(index, last + 1, 2))
                        self.namespaced_calls.append((".".join(names), start))
                        self.namespace_roots.add(name)
                        continue
            self.free_variables.setdefault(name, start)


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
