"""What changed between two versions of a resource: a unified diff and the changed paths.

Both are computed from the stored, normalised documents (the DSL's own spelling, defaults
as the author wrote them), so reformatting or reordering keys never shows as a change.
The text diff is of the canonical YAML of each document (keys sorted, block style); the
structured list names each changed leaf by its path, in the diagnostics' spelling
(`spec.steps[2].on.timeout`). Lists are compared position by position: a step inserted
at the front shows as changes to the steps after it, as it does in the text.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

ChangeKind = Literal["added", "removed", "changed"]


class PathChange(BaseModel):
    """One changed place: `before` is absent when added, `after` when removed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    op: ChangeKind
    before: Any = None
    after: Any = None


def canonical_yaml(document: Any) -> str:
    return yaml.safe_dump(
        document, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )


def unified_diff(before: Any, after: Any, before_label: str, after_label: str) -> str:
    lines = difflib.unified_diff(
        canonical_yaml(before).splitlines(keepends=True),
        canonical_yaml(after).splitlines(keepends=True),
        fromfile=before_label,
        tofile=after_label,
    )
    return "".join(lines)


def changed_paths(before: Any, after: Any, path: str = "") -> list[PathChange]:
    """Every leaf (or whole subtree added or removed) that differs, in document order."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[PathChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            place = f"{path}.{key}" if path else str(key)
            if key not in after:
                changes.append(PathChange(path=place, op="removed", before=before[key]))
            elif key not in before:
                changes.append(PathChange(path=place, op="added", after=after[key]))
            else:
                changes.extend(changed_paths(before[key], after[key], place))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        changes = []
        for index in range(max(len(before), len(after))):
            place = f"{path}[{index}]"
            if index >= len(after):
                changes.append(PathChange(path=place, op="removed", before=before[index]))
            elif index >= len(before):
                changes.append(PathChange(path=place, op="added", after=after[index]))
            else:
                changes.extend(changed_paths(before[index], after[index], place))
        return changes
    # `1 == 1.0 == True` in Python: a change of type is a change of meaning here.
    if before == after and type(before) is type(after):
        return []
    return [PathChange(path=path, op="changed", before=before, after=after)]
