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
from urllib.parse import urlsplit

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    nodes,
    pass_environment,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cjo.dsl._errors import TemplateRenderError
from cjo.dsl._template_sample import _Sample, _StrictMap, sample_context

__all__ = [
    "TRACK",
    "LinkTracker",
    "TemplateProblem",
    "TemplateRenderError",
    "check_template",
    "link_problems",
    "render",
    "sample_context",
    "static_problems",
    "tracked_urls",
]

# The template helper that turns a URL into a tracked link: `{{ track("https://...") }}`.
TRACK = "track"
# Whatever turns a declared URL into the link the customer gets (at run time: a signed
# redirect through CJO that records the click; when validating: the URL itself).
LinkTracker = Callable[[str], str]
_MAX_URL = 2048

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


@dataclass(frozen=True, slots=True)
class _Links:
    urls: tuple[str, ...]
    problems: tuple[TemplateProblem, ...]


@functools.lru_cache(maxsize=512)
def _links(source: str) -> _Links:
    """The URLs `track(...)` is called with, and every use of `track` that is not such a call.

    Read from the syntax tree, not from a render: only a quoted string literal written in
    the template is a URL the template declared. Anything computed (`track(vars.url)`,
    `track("https://a/" ~ x)`, `{% set t = track %}`) could make CJO's redirect endpoint
    send customers wherever data says, an open redirect, so it is refused.
    """
    try:
        tree = _ENV.parse(source)
    except Exception:
        return _Links((), ())  # not a template: syntax_problems says why
    urls: list[str] = []
    problems: list[TemplateProblem] = []
    called: set[int] = set()
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == TRACK):
            continue
        called.add(id(call.node))
        args = call.args
        only = args[0] if len(args) == 1 else None
        plain = not call.kwargs and call.dyn_args is None and call.dyn_kwargs is None
        if not (plain and isinstance(only, nodes.Const) and isinstance(only.value, str)):
            problems.append(
                TemplateProblem(
                    f"{TRACK}() takes one URL written in the template as a quoted string, "
                    f'e.g. {TRACK}("https://bank.example/offer"); a computed URL could '
                    "redirect customers anywhere",
                    call.lineno,
                )
            )
            continue
        url: str = only.value
        why = _bad_url(url)
        if why is not None:
            problems.append(TemplateProblem(f"{TRACK}({url!r}): {why}", call.lineno))
        elif url not in urls:
            urls.append(url)
    for name in tree.find_all(nodes.Name):
        if name.name == TRACK and name.ctx == "load" and id(name) not in called:
            problems.append(
                TemplateProblem(
                    f"'{TRACK}' may only be called directly, as {TRACK}(\"<URL>\")",
                    name.lineno,
                )
            )
    return _Links(tuple(urls), tuple(sorted(problems, key=lambda p: p.line or 0)))


def _bad_url(url: str) -> str | None:
    if len(url) > _MAX_URL:
        return f"a tracked URL has at most {_MAX_URL} characters"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "a URL has no spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "a tracked URL is absolute, http or https, with a host"
    return None


def tracked_urls(body: str) -> tuple[str, ...]:
    """The URLs the template declares with `track(...)`, each once, in order of appearance."""
    return _links(body).urls


def link_problems(body: str) -> list[TemplateProblem]:
    """Uses of `track` that do not declare a literal http(s) URL; [] when all are fine."""
    return list(_links(body).problems)


def _untracked(url: str) -> str:
    return url


def _guarded_tracker(body: str, tracker: LinkTracker) -> LinkTracker:
    """`track` as templates see it: it accepts only URLs the template itself declares.

    Validation refuses anything else already; this holds even for a template that never
    went through validation.
    """
    declared = frozenset(tracked_urls(body))

    def track(url: object) -> str:
        if not isinstance(url, str) or url not in declared:
            raise SecurityError(
                f"{TRACK}() only takes a URL written in the template as a quoted string"
            )
        return tracker(url)

    return track


def static_problems(body: str) -> list[TemplateProblem]:
    """Everything wrong that needs no context: syntax, then misuse of `track`."""
    return syntax_problems(body) or link_problems(body)


def render(body: str, context: Mapping[str, Any], *, track: LinkTracker | None = None) -> str:
    """Render `body` with `context` in the sandbox; any failure is a TemplateRenderError.

    `track` turns each URL the template declares with `track("...")` into the link to put
    in the message; without it the URL stays as written (validation, previews).
    """
    try:
        template = _compile(body)
    except TemplateSyntaxError as exc:
        message = f"syntax error: {_clip(exc.message or 'invalid syntax').rstrip('.')}"
        raise TemplateRenderError(message, exc.lineno) from None
    except Exception as exc:
        # The parser and Python's compiler have their own limits (nesting depth, ...).
        raise TemplateRenderError(f"template does not compile: {_describe(exc)}") from None
    values = dict(context)
    values[TRACK] = _guarded_tracker(body, track or _untracked)
    try:
        return template.render(values)
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
    misused = link_problems(body)
    if misused:
        return misused
    try:
        render(body, sample_context(step_vars, step_ids, journey_name, has_benefit=has_benefit))
    except TemplateRenderError as exc:
        return [TemplateProblem(exc.message, exc.line)]
    return []
