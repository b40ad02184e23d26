"""Template rendering: one sandboxed, strict Jinja2 environment for validation and run time.

Validation renders a template once against the sample context built in `_template_sample`
(re-exported here as `sample_context`), so that a template that would fail on real data fails
before a journey is published. This module knows the sample values only as far as filters,
`tojson` and error messages must treat them specially.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    pass_environment,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cjo.dsl._template_sample import _Sample, _StrictMap, sample_context

__all__ = [
    "TemplateProblem",
    "TemplateRenderError",
    "check_template",
    "render",
    "sample_context",
]

# Messages end up in one-line diagnostics and send logs; an exception that quotes a huge value
# must not flood them.
_MAX_MESSAGE = 300
# Jinja rewrites tracebacks so that frames inside template code carry this file name and the
# template's own line numbers.
_TEMPLATE_FILENAME = "<template>"
# Bounds on work a single operator can ask for; Python would otherwise happily build a
# gigabyte string or a number with billions of digits (even at compile time, by constant folding).
_MAX_REPEAT_ITEMS = 100_000
_MAX_POWER_BITS = 4_096


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """Why a template does not render; `line` is 1-based inside the template text."""

    message: str
    line: int | None


class TemplateRenderError(Exception):
    """A template failed to compile or render; `message` is fit to show an operator."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Undefined(StrictUndefined):
    """StrictUndefined that names the context variable instead of a Python class."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if self._undefined_hint is None and isinstance(owner, _StrictMap):
            return f"{owner._label!r} has no attribute {self._undefined_name!r}"
        return str(super()._undefined_message)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on the two operators that can exhaust memory or CPU alone.

    Immutable, because the run-time context shares objects with workflow state that a
    template must never change.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0:
            if abs(left) > 1 and right * abs(left).bit_length() > _MAX_POWER_BITS:
                raise SecurityError("the result of '**' would be too large")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and _is_int(count):
                    if len(seq) * count > _MAX_REPEAT_ITEMS:
                        raise SecurityError("the result of '*' would be too large")
        return super().call_binop(context, operator, left, right)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja's wording names this module's private classes, which mean nothing to operators.
        return self.undefined(
            f"access to attribute {attribute!r} of {_owner(obj)} is not allowed",
            name=attribute,
            obj=obj,
            exc=SecurityError,
        )


def _owner(obj: object) -> str:
    if isinstance(obj, _StrictMap):
        return repr(obj._label)
    if isinstance(obj, _Sample):
        return "a data value"
    return f"a {type(obj).__name__!r} value"


def _is_int(value: object) -> bool:
    return isinstance(value, int)


def _sample_aware(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an environment filter that answers "undefined" for an empty sequence.

    A sample iterates as empty, so without this `{{ trigger.props.lines | first }}` would fail
    validation although it renders fine on real data.
    """

    @pass_environment
    def wrapper(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, _Sample):
            return value[0]
        return original(environment, value, *args, **kwargs)

    return wrapper


def _json_default(value: object) -> object:
    if isinstance(value, _Sample):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_environment() -> _Sandbox:
    env = _Sandbox(undefined=_Undefined, autoescape=False)
    # Placeholder Latin has no place in customer messages and its size is unbounded.
    env.globals.pop("lipsum", None)
    for name in ("first", "last", "min", "max"):
        env.filters[name] = _sample_aware(env.filters[name])
    env.policies["json.dumps_kwargs"] = {
        "sort_keys": True,
        "ensure_ascii": False,
        "default": _json_default,
    }
    return env


_ENV = _make_environment()


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> Template:
    return _ENV.from_string(source)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _template_line(exc: BaseException) -> int | None:
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: Exception) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return _clip(text) if text.strip() else type(exc).__name__


def syntax_problems(body: str) -> list[TemplateProblem]:
    """Problems that need no context: the template does not parse or compile."""
    try:
        _compile(body)
    except TemplateSyntaxError as exc:
        message = f"syntax error: {_clip(exc.message or 'invalid syntax').rstrip('.')}"
        return [TemplateProblem(message, exc.lineno)]
    except Exception as exc:
        return [TemplateProblem(f"template does not compile: {_describe(exc)}", None)]
    return []


def render(body: str, context: Mapping[str, Any]) -> str:
    """Render `body` with `context` in the sandbox; any failure is a TemplateRenderError."""
    try:
        template = _compile(body)
    except TemplateSyntaxError as exc:
        message = f"syntax error: {_clip(exc.message or 'invalid syntax').rstrip('.')}"
        raise TemplateRenderError(message, exc.lineno) from None
    except Exception as exc:
        # The parser and Python's compiler have their own limits (nesting depth, ...).
        raise TemplateRenderError(f"template does not compile: {_describe(exc)}") from None
    try:
        return template.render(dict(context))
    except Exception as exc:
        raise TemplateRenderError(_describe(exc), _template_line(exc)) from None


def check_template(
    body: str,
    *,
    step_vars: Mapping[str, Any],
    step_ids: Sequence[str],
    journey_name: str = "sample-journey",
    has_benefit: bool = True,
) -> list[TemplateProblem]:
    """Render `body` once against the sample context; [] if it renders."""
    try:
        render(body, sample_context(step_vars, step_ids, journey_name, has_benefit=has_benefit))
    except TemplateRenderError as exc:
        return [TemplateProblem(exc.message, exc.line)]
    return []
