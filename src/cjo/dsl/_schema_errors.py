"""Turn pydantic's validation errors into E110 diagnostics that point into the YAML.

Pydantic reports locations in model terms (with union tags such as
`step:send`); operators need the document path and the line and column of
the offending key or value, plus a hint when a name is nearly right.
"""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cjo.dsl._diagnostics import Diagnostic, did_you_mean
from cjo.dsl._documents import KINDS, AnyDocument
from cjo.dsl._journey import STEP_TYPES
from cjo.dsl._loader import Document, Path, format_path, value_at
from cjo.dsl._types import UNION_TAGS

_SIMPLE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "none_required": "must be empty",
}


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _field_keys(model: type[BaseModel]) -> dict[str, Any]:
    return {(info.alias or name): info.annotation for name, info in model.model_fields.items()}


def allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts (for "did you mean" on unknown fields)."""
    current: Any = AnyDocument
    for element in loc:
        current = _unwrap(current)
        if isinstance(element, str) and element in UNION_TAGS:
            current = UNION_TAGS[element]
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_keys(current).get(str(element))
        elif get_origin(current) is list and isinstance(element, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(_field_keys(current))
    return []


def _data_path(data: Any, loc: tuple[Any, ...], error_type: str) -> tuple[Path, str | None]:
    """Follow `loc` through the document; returns the path and a missing key, if any."""
    path: list[str | int] = []
    node = data
    for index, element in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and isinstance(element, str) and element in node:
            node = node[element]
            path.append(element)
        elif isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
            node = node[element]
            path.append(element)
        elif last and error_type == "missing":
            return tuple(path), str(element)
        # Anything else is a union tag or a pydantic label: not part of the document.
    return tuple(path), None


def _expected_literals(ctx: dict[str, Any] | None) -> list[str]:
    return re.findall(r"'([^']*)'", str((ctx or {}).get("expected", "")))


def _message(error: dict[str, Any], data_at: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    shown = repr(data_at) if isinstance(data_at, str | int | float | bool) else None
    if kind == "literal_error":
        options = _expected_literals(error.get("ctx"))
        listed = ", ".join(options)
        return f"{shown} is not one of: {listed}{did_you_mean(str(data_at), options)}"
    if kind in _SIMPLE_MESSAGES:
        base = _SIMPLE_MESSAGES[kind]
        return f"{base}, not {shown}" if shown is not None else base
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value|Assertion) error, ", "", str(error["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match the pattern {error.get('ctx', {}).get('pattern')}"
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx") or {}
        if kind == "too_short":
            least = ctx.get("min_length", 1)
            return f"needs at least {least} item{'s' if least != 1 else ''}"
        return f"takes at most {ctx.get('max_length')} items"
    if kind.startswith(("greater_than", "less_than", "string_too")):
        text = str(error["msg"])
        message = text[0].lower() + text[1:]
        return message.replace("input should", "must").replace("list should", "must")
    return str(error["msg"])


def schema_diagnostics(document: Document, error: ValidationError) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for details in error.errors(include_url=False):
        item: dict[str, Any] = dict(details)
        loc = tuple(item["loc"])
        kind = item["type"]
        path, missing = _data_path(document.data, loc, kind)
        data_at = value_at(document.data, path)
        at_key = False
        if kind == "missing":
            message = f"missing required field '{missing}'"
            shown_path = format_path((*path, missing)) if missing else format_path(path)
        elif kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            message = f"unknown field '{key}'{did_you_mean(key, allowed_keys(loc[:-1]))}"
            shown_path, at_key = format_path(path), True
        elif kind == "union_choice":
            message, path = _union_message(item, data_at, path)
            shown_path = format_path(path)
        else:
            message = _message(item, data_at, loc)
            shown_path = format_path(path)
        line, column = document.position(path, at_key=at_key)
        out.append(Diagnostic(document.file, line, column, "E110", message, shown_path))
    return out


def _union_message(item: dict[str, Any], data_at: Any, path: Path) -> tuple[str, Path]:
    text = str(item["msg"])
    if isinstance(data_at, dict) and text.startswith("a step needs") and "type" in data_at:
        value = str(data_at["type"])
        hint = did_you_mean(value, STEP_TYPES)
        return f"unknown step type '{value}'{hint}; one of {', '.join(STEP_TYPES)}", (*path, "type")
    if isinstance(data_at, dict) and text.startswith("a document needs") and "kind" in data_at:
        value = str(data_at["kind"])
        hint = did_you_mean(value, KINDS)
        return f"unknown kind '{value}'{hint}; one of {', '.join(KINDS)}", (*path, "kind")
    return text, path
