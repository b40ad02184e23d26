"""Safe YAML loading with source positions.

PyYAML's safe loader still expands aliases (a "billion laughs" document grows
exponentially in memory) and resolves YAML 1.1 surprises (`NO` is false,
`21:00` is the integer 1260). So we read the *event* stream ourselves and build
plain Python values from it: anchors, aliases and non-core tags are refused as
soon as they appear, nesting depth is bounded, and plain scalars resolve by the
YAML 1.2 core schema. Every node's position is kept so diagnostics can point at
the exact key or value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from cjo.dsl._diagnostics import Diagnostic

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

PathPart = str | int
Path = tuple[PathPart, ...]

_Parser: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CORE = "tag:yaml.org,2002:"
_CORE_TAGS = {f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a node sits: its value, and the key that introduced it (if any)."""

    line: int
    column: int
    end_line: int
    end_column: int
    key_line: int
    key_column: int
    style: str | None = None  # None for plain scalars and collections, else the quote

    @property
    def single_line_scalar(self) -> bool:
        return self.line == self.end_line and self.style in (None, "'", '"')


@dataclass(slots=True)
class SourceMap:
    positions: dict[Path, Position] = field(default_factory=dict)

    def position(self, path: Path, *, at_key: bool = False) -> tuple[int, int]:
        """The line and column of `path`, or of its nearest existing ancestor."""
        probe = tuple(path)
        while probe not in self.positions and probe:
            probe = probe[:-1]
        pos = self.positions.get(probe)
        if pos is None:
            return (1, 1)
        if at_key and probe == tuple(path):
            return (pos.key_line, pos.key_column)
        return (pos.line, pos.column)

    def get(self, path: Path) -> Position | None:
        return self.positions.get(tuple(path))


@dataclass(slots=True)
class Document:
    file: str
    index: int
    data: Any
    source: SourceMap

    def position(self, path: Path, *, at_key: bool = False) -> tuple[int, int]:
        return self.source.position(path, at_key=at_key)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def value_at(data: Any, path: Path) -> Any:
    """The value at `path` in loaded data, or None where the path does not lead."""
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


class _Refused(Exception):
    def __init__(self, code: str, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return (1, 1)
    return (int(mark.line) + 1, int(mark.column) + 1)


def _resolve_plain(text: str) -> Any:
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    if _INT10.match(text):
        return int(text)
    if _INT8.match(text):
        return int(text[2:], 8)
    if _INT16.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _scalar_with_tag(text: str, tag: str, line: int, column: int) -> Any:
    kind = tag.removeprefix(_CORE)
    if kind == "str":
        return text
    value = _resolve_plain(text)
    expected: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (float, int),
        "bool": (bool,),
        "null": (type(None),),
    }
    types = expected.get(kind)
    # bool is a subclass of int: `!!int false` must not pass as the number 0.
    if (
        types is None
        or not isinstance(value, types)
        or (kind != "bool" and isinstance(value, bool))
    ):
        raise _Refused("E100", f"'{text}' is not a valid !!{kind}", line, column)
    if kind == "float" and isinstance(value, int | float):
        return float(value)
    return value


class _Builder:
    """Turns a PyYAML event stream into documents, refusing anything unsafe."""

    def __init__(self, file: str, events: Iterator[Any]) -> None:
        self.file = file
        self.events = events
        self.depth = 0
        # Mistakes that leave the document readable (a duplicate key) are reported with
        # everything else validation finds, instead of hiding the rest of the file.
        self.problems: list[Diagnostic] = []

    def _next(self) -> Any:
        return next(self.events)

    def documents(self) -> Iterator[tuple[Any, SourceMap, int]]:
        index = 0
        for event in self.events:
            if isinstance(event, yaml.DocumentStartEvent):
                source = SourceMap()
                start = _mark(event.start_mark)
                body = self._next()
                if isinstance(body, yaml.DocumentEndEvent):
                    data: Any = None
                else:
                    data = self._node(body, (), source, start)
                    self._next()  # DocumentEndEvent
                yield data, source, index
                index += 1

    def _check(self, event: Any) -> tuple[int, int]:
        line, column = _mark(event.start_mark)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(
                "E101",
                "anchors and aliases are not allowed (they can blow a small file up to a huge one)",
                line,
                column,
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _CORE_TAGS:
            raise _Refused(
                "E101", f"tag '{tag}' is not allowed; only YAML core tags are", line, column
            )
        return line, column

    def _node(self, event: Any, path: Path, source: SourceMap, key_pos: tuple[int, int]) -> Any:
        line, column = self._check(event)
        if isinstance(event, yaml.ScalarEvent):
            end_line, end_column = _mark(event.end_mark)
            style = event.style or None
            source.positions[path] = Position(
                line, column, end_line, end_column, key_pos[0], key_pos[1], style
            )
            if event.tag in _CORE_TAGS:
                return _scalar_with_tag(event.value, event.tag, line, column)
            if style is None and event.tag != "!":
                return _resolve_plain(event.value)
            return event.value
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused("E101", f"nesting is deeper than {MAX_DEPTH} levels", line, column)
        try:
            if isinstance(event, yaml.SequenceStartEvent):
                if event.tag not in (None, "!", f"{_CORE}seq"):
                    raise _Refused("E100", f"a sequence cannot be tagged {event.tag}", line, column)
                return self._sequence(event, path, source, key_pos)
            if event.tag not in (None, "!", f"{_CORE}map"):
                raise _Refused("E100", f"a mapping cannot be tagged {event.tag}", line, column)
            return self._mapping(event, path, source, key_pos)
        finally:
            self.depth -= 1

    def _sequence(self, start: Any, path: Path, source: SourceMap, key_pos: tuple[int, int]) -> Any:
        items: list[Any] = []
        while True:
            event = self._next()
            if isinstance(event, yaml.SequenceEndEvent):
                break
            item_pos = _mark(event.start_mark)
            items.append(self._node(event, (*path, len(items)), source, item_pos))
        self._record_collection(start, event, path, source, key_pos)
        return items

    def _mapping(self, start: Any, path: Path, source: SourceMap, key_pos: tuple[int, int]) -> Any:
        mapping: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        while True:
            event = self._next()
            if isinstance(event, yaml.MappingEndEvent):
                break
            key_line, key_column = self._check(event)
            if not isinstance(event, yaml.ScalarEvent):
                # Skip the key and its value (both still checked for safety) and go on.
                self._node(event, path, SourceMap(), (key_line, key_column))
                self._node(self._next(), path, SourceMap(), (key_line, key_column))
                self._problem(key_line, key_column, "mapping keys must be plain strings", path)
                continue
            key = event.value
            value_event = self._next()
            child = (*path, key)
            if key in mapping:
                # The first value stands; the repeated one is read (and checked) but dropped.
                self._node(value_event, child, SourceMap(), (key_line, key_column))
                message = f"duplicate key '{key}' (first on line {key_lines[key]})"
                self._problem(key_line, key_column, message, child)
                continue
            key_lines[key] = key_line
            mapping[key] = self._node(value_event, child, source, (key_line, key_column))
        self._record_collection(start, event, path, source, key_pos)
        return mapping

    def _problem(self, line: int, column: int, message: str, path: Path) -> None:
        self.problems.append(
            Diagnostic(self.file, line, column, "E110", message, format_path(path))
        )

    @staticmethod
    def _record_collection(
        start: Any, end: Any, path: Path, source: SourceMap, key_pos: tuple[int, int]
    ) -> None:
        line, column = _mark(start.start_mark)
        end_line, end_column = _mark(end.end_mark)
        source.positions[path] = Position(
            line, column, end_line, end_column, key_pos[0], key_pos[1], None
        )


def load_documents(
    text: str | bytes, file: str = "<input>"
) -> tuple[list[Document], list[Diagnostic]]:
    """Parse a YAML bundle into documents. Never raises for bad input: it reports E100/E101."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > MAX_BYTES:
        return [], [
            Diagnostic(file, 1, 1, "E101", f"file is {size} bytes; the limit is {MAX_BYTES}")
        ]
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [], [Diagnostic(file, 1, 1, "E100", f"file is not UTF-8 text: {exc.reason}")]
    documents: list[Document] = []
    try:
        builder = _Builder(file, yaml.parse(text, Loader=_Parser))
        for data, source, index in builder.documents():
            documents.append(Document(file, index, data, source))
    except _Refused as refused:
        return [], [Diagnostic(file, refused.line, refused.column, refused.code, refused.message)]
    except yaml.MarkedYAMLError as exc:
        line, column = _mark(exc.problem_mark or exc.context_mark)
        problem = exc.problem or exc.context or "invalid YAML"
        if problem == "exceeded maximum nesting depth":
            # libyaml scans ahead through flow collections and stops at its own limit
            # (1000 levels) before the builder sees level 65: still too deep, not bad YAML.
            message = f"nesting is deeper than {MAX_DEPTH} levels"
            return [], [Diagnostic(file, line, column, "E101", message)]
        return [], [Diagnostic(file, line, column, "E100", f"not valid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return [], [Diagnostic(file, 1, 1, "E100", f"not valid YAML: {exc}")]
    except (RecursionError, MemoryError):
        return [], [Diagnostic(file, 1, 1, "E101", "input is too complex to load safely")]
    return documents, builder.problems
