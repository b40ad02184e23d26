"""Template rendering: one sandboxed, strict Jinja2 environment for validation and run time.

Validation renders a template against a *sample* context. The data maps whose keys nobody can
know in advance (`user.attrs`, `user.addresses`, `user.consents`, `trigger.props`,
`event.props`, `steps.<id>.result`) hold permissive sample values; everything else is a strict
map, so a typo such as `user.nmae` or a `vars.x` the send step does not define is caught before a
journey is published rather than when the first customer is due a message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
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

from cjo.dsl._cel import expression_of

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

_SAMPLE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_SAMPLE_NOW = datetime(2026, 1, 1, 9, 0, tzinfo=_SAMPLE_TZ)


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


class _StrictMap(dict[Any, Any]):
    """A plain dict to templates, plus a label so a missing key reads "'vars' has no ..."."""

    __slots__ = ("_label",)

    def __init__(self, label: str, items: Mapping[Any, Any]) -> None:
        super().__init__(items)
        self._label = label


class _Sample:
    """Stands for a value nobody can know at validation time: any key, any use, no error.

    Template attribute access falls back to item access when Python finds no attribute, so
    leaving `__getattr__` undefined keeps Jinja's and the sandbox's own probes (`jinja_pass_arg`,
    `unsafe_callable`, `__html__`, ...) answering "no" while `{{ x.anything }}` still works.
    """

    # Name-mangled, so `{{ x.__path }}` in a template finds no attribute and is just a key.
    __slots__ = ("__path",)

    def __init__(self, path: str) -> None:
        self.__path = path

    def __str__(self) -> str:
        return f"<{self.__path}>"

    def __repr__(self) -> str:
        return f"_Sample({self.__path!r})"

    def __format__(self, spec: str) -> str:
        # Whatever kind of value the format spec is meant for, one of these accepts it.
        for stand_in in (str(self), 0, 0.0):
            try:
                return format(stand_in, spec)
            except ValueError:
                continue
        return format(0.0, spec)

    def __getitem__(self, key: object) -> _Sample:
        if isinstance(key, str):
            return _Sample(f"{self.__path}.{key}")
        return _Sample(f"{self.__path}[{key!r}]")

    def __call__(self, *args: object, **kwargs: object) -> _Sample:
        return _Sample(f"{self.__path}()")

    # Real methods because filters such as `dictsort`, `items` and `xmlattr` call them from
    # Python, where the item fallback does not apply; a dict at run time has them too.
    def items(self) -> tuple[()]:
        return ()

    def keys(self) -> tuple[()]:
        return ()

    def values(self) -> tuple[()]:
        return ()

    # Empty, because only emptiness is right for any shape of item (`for k, v in ...`).
    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, item: object) -> bool:
        return True

    # True, so that the body of an `if` on sample data is the part that gets checked.
    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return True

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return id(self)

    def __int__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    def __float__(self) -> float:
        return 0.0

    def __round__(self, ndigits: int | None = None) -> _Sample:
        return self

    def __floor__(self) -> _Sample:
        return self

    def __ceil__(self) -> _Sample:
        return self

    def __trunc__(self) -> _Sample:
        return self

    def __neg__(self) -> _Sample:
        return self

    def __pos__(self) -> _Sample:
        return self

    def __abs__(self) -> _Sample:
        return self

    def __add__(self, other: object) -> _Sample:
        return self

    def __sub__(self, other: object) -> _Sample:
        return self

    def __mul__(self, other: object) -> _Sample:
        return self

    def __truediv__(self, other: object) -> _Sample:
        return self

    def __floordiv__(self, other: object) -> _Sample:
        return self

    def __mod__(self, other: object) -> _Sample:
        return self

    def __pow__(self, other: object) -> _Sample:
        return self

    __radd__ = __add__
    __rsub__ = __sub__
    __rmul__ = __mul__
    __rtruediv__ = __truediv__
    __rfloordiv__ = __floordiv__
    __rmod__ = __mod__
    __rpow__ = __pow__


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


def _sample_value(value: Any, path: str) -> Any:
    if expression_of(value) is not None:
        return _Sample(path)
    if isinstance(value, Mapping):
        return _StrictMap(path, {k: _sample_value(v, f"{path}.{k}") for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_sample_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _sample_event(label: str) -> _StrictMap:
    return _StrictMap(
        label,
        {"name": "sample_event", "props": _Sample(f"{label}.props"), "ts": _SAMPLE_NOW},
    )


def sample_context(
    step_vars: Mapping[str, Any],
    step_ids: Sequence[str],
    journey_name: str = "sample-journey",
    *,
    has_benefit: bool = True,
) -> dict[str, Any]:
    """A fresh context with the run-time shape: strict records, permissive data maps.

    `benefit` is there only when the journey can grant one, as at run time.
    """
    user = _StrictMap(
        "user",
        {
            "id": "u-sample",
            "name": "示例用户",
            "phone": "13800000000",
            "email": "user@example.com",
            "locale": "zh-CN",
            "timezone": "Asia/Shanghai",
            "birthday": date(1990, 1, 1),
            "created_at": datetime(2024, 1, 1, 9, 0, tzinfo=_SAMPLE_TZ),
            "lifecycle": "growing",
            "tags": ["sample-tag"],
            "attrs": _Sample("user.attrs"),
            "addresses": _Sample("user.addresses"),
            "consents": _Sample("user.consents"),
        },
    )
    steps = _StrictMap(
        "steps",
        {
            step_id: _StrictMap(
                f"steps.{step_id}",
                {
                    "outcome": "sample_outcome",
                    "result": _Sample(f"steps.{step_id}.result"),
                    "event": _sample_event(f"steps.{step_id}.event"),
                },
            )
            for step_id in step_ids
        },
    )
    benefit = _StrictMap(
        "benefit",
        {
            "id": "grant-sample",
            "name": "sample-benefit",
            "type": "cashback",
            "value": 20,
            "unit": "CNY",
            "quantity": 1,
            "code": "SAMPLE-CODE",
            "expires_at": _SAMPLE_NOW + timedelta(days=30),
        },
    )
    context = {
        "user": user,
        "trigger": _sample_event("trigger"),
        "event": _sample_event("event"),
        "steps": steps,
        "journey": _StrictMap("journey", {"name": journey_name, "version": 1}),
        "now": _SAMPLE_NOW,
        "vars": _StrictMap(
            "vars", {k: _sample_value(v, f"vars.{k}") for k, v in step_vars.items()}
        ),
        "benefit": benefit,
    }
    if not has_benefit:
        del context["benefit"]
    return context


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
