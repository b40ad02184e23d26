"""Diagnostics: what validation says about a document, with its place in the source."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# The spec's table, kept here so every code has one meaning in one place.
CODES: dict[str, str] = {
    "E100": "not YAML, or not a mapping",
    "E101": "unsafe or oversized input",
    "E110": "schema: unknown field, wrong type, missing required field, value out of range",
    "E111": "duplicate document (same kind, business line and name)",
    "E200": "duplicate step id",
    "E201": "reference to an unknown step",
    "E202": "cycle without a wait/wait_for",
    "W203": "unreachable step",
    "E210": "expression does not compile",
    "E211": "expression uses an unknown variable or function",
    "E220": "reference to an unknown Segment, Benefit, Template, RiskPolicy or activity",
    "E221": "cycle of segment references",
    "E230": "template does not render",
    "E231": "marketing SMS template without an opt-out instruction",
    "E232": "template channel differs from the channel it is sent on",
    "E240": "trigger, goal or exit names no event, or a trigger has both/neither event and segment",
}


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One problem found in a file. Line and column are 1-based; 0 means "the whole file"."""

    file: str
    line: int
    column: int
    code: str
    message: str
    path: str = ""
    severity: Severity = field(default=Severity.ERROR)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format_text(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity} {self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return {
            key: data[key]
            for key in ("severity", "code", "message", "file", "line", "column", "path")
        }


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=lambda d: (d.file, d.line, d.column, d.code, d.message))


def did_you_mean(word: str, candidates: Sequence[str] | Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or '' when nothing is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
