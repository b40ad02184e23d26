"""Text for people: aligned tables, `name  value` lines, times, rates and diagnostics."""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Iterable, Sequence
from datetime import datetime
from typing import Any


def format_diagnostic(diagnostic: dict[str, Any]) -> str:
    """As `cjo validate` prints a diagnostic: file:line:column: severity code: message."""
    return (
        f"{diagnostic.get('file', '?')}:{diagnostic.get('line', 0)}:"
        f"{diagnostic.get('column', 0)}: {diagnostic.get('severity', 'error')} "
        f"{diagnostic.get('code', '')}: {diagnostic.get('message', '')}"
    )


def _width(text: str) -> int:
    """Columns the text takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Container[int] = ()
) -> str:
    """Aligned text columns, two spaces apart; the columns in `right` (numbers) flush right."""
    cells = [list(headers)] + [[cell(value) for value in row] for row in rows]
    widths = [max(_width(row[index]) for row in cells) for index in range(len(headers))]
    lines = []
    for row in cells:
        parts = []
        for index, (text, width) in enumerate(zip(row, widths, strict=True)):
            padding = " " * (width - _width(text))
            parts.append(padding + text if index in right else text + padding)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """`name  value` lines, the values aligned; pairs without a value are left out."""
    shown = [(name, cell(value)) for name, value in pairs if value not in (None, "", {})]
    width = max((len(name) for name, _ in shown), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in shown)


def when(moment: object) -> str | None:
    """An API timestamp as a reader wants it: to the second, in this machine's time zone."""
    if not isinstance(moment, str):
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def counts(numbers: dict[str, Any]) -> str:
    """`{"pass": 3, "review": 1}` as `pass 3, review 1`."""
    return ", ".join(f"{name} {number}" for name, number in numbers.items())


def percent(rate: object) -> str | None:
    return f"{rate:.1%}" if isinstance(rate, int | float) else None


def points(value: float) -> str:
    """A difference of rates in percentage points, signed: 0.0854 as `+8.5`."""
    return f"{value * 100:+.1f}"
