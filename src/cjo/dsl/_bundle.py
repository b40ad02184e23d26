"""A validated file: its documents, how references resolve, and how problems are reported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cjo.dsl._diagnostics import Diagnostic, Severity, did_you_mean
from cjo.dsl._documents import Envelope
from cjo.dsl._loader import Document, Path, Position, format_path, value_at
from cjo.dsl._lookup import InMemoryLookup, ResourceLookup, resource_version


@dataclass(frozen=True, slots=True)
class Entry:
    """One document of the bundle: where it came from and what it says."""

    source: Document
    model: Envelope

    @property
    def kind(self) -> str:
        return str(getattr(self.model, "kind"))  # noqa: B009

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.model.business_line, self.model.name)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A referenced resource, from the bundle (with its source) or published (with a version)."""

    model: Envelope
    version: str
    source: Document | None = None

    @property
    def spec(self) -> Any:
        return getattr(self.model, "spec")  # noqa: B009


@dataclass
class Bundle:
    file: str
    entries: list[Entry] = field(default_factory=list)
    lookup: ResourceLookup = field(default_factory=InMemoryLookup)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Documents that failed their schema: references to them are not reported
    # again as unknown, so one mistake does not cascade.
    broken: set[tuple[str, str, str]] = field(default_factory=set)

    def of_kind(self, kind: str) -> Iterator[Entry]:
        return (entry for entry in self.entries if entry.kind == kind)

    def find(self, kind: str, business_line: str, name: str) -> Resolved | None:
        for entry in self.entries:
            if entry.key == (kind, business_line, name):
                return Resolved(entry.model, resource_version(entry.model), entry.source)
        published = self.lookup.resource(kind, business_line, name)
        if published is None:
            return None
        return Resolved(published.document, published.version)

    def names(self, kind: str, business_line: str) -> list[str]:
        local = [e.model.name for e in self.entries if e.key[:2] == (kind, business_line)]
        return sorted(set(local) | set(self.lookup.names(kind, business_line)))

    # Reporting -----------------------------------------------------------------

    def report(
        self,
        document: Document,
        path: Path,
        code: str,
        message: str,
        *,
        at_key: bool = False,
        offset: int | None = None,
        severity: Severity = Severity.ERROR,
    ) -> None:
        line, column = document.position(path, at_key=at_key)
        position = document.source.get(path)
        if (
            offset is not None
            and position is not None
            and position.single_line_scalar
            and _columns_match_text(position, value_at(document.data, path))
        ):
            column += offset + (1 if position.style else 0)
        self.diagnostics.append(
            Diagnostic(document.file, line, column, code, message, format_path(path), severity)
        )

    def report_unknown_reference(
        self, document: Document, path: Path, kind: str, business_line: str, name: str
    ) -> None:
        if (kind, business_line, name) in self.broken:
            return
        hint = did_you_mean(name, self.names(kind, business_line))
        where = f" in business line '{business_line}'" if business_line != "default" else ""
        self.report(document, path, "E220", f"unknown {kind} '{name}'{where}{hint}")


def _columns_match_text(position: Position, value: Any) -> bool:
    """Whether an offset into the scalar's text is the same distance in the source line.

    An escape (`\\"`, `\\u0027`, `''`) makes the source longer than the text; an offset
    would then land on the wrong character, so the value's start is reported instead.
    """
    quotes = 2 if position.style else 0
    return isinstance(value, str) and position.end_column - position.column - quotes == len(value)
