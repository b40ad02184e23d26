"""The CEL lexer and scanner behind the static checks in `cjo.dsl._cel`.

cel-rust reports no token positions, and its `variables()` / `functions()` lists blur together
names that mean different things (macro-bound variables, namespaced calls, member names). This
forgiving lexer and the `_Scan` over its tokens place each problem in the source and tell those
names apart; `_too_big` keeps sources that would overflow cel-rust's native stack away from it.
It is a module of its own so that `_cel` stays about what is checked and evaluated, not how
the source is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cel import stdlib

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

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
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

_IDENT = "ident"
_NUMBER = "number"
_STRING = "string"
_PUNCT = "punct"


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
