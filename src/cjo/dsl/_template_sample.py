"""The sample context that templates are rendered against at validation time.

The data maps whose keys nobody can know in advance (`user.attrs`, `user.addresses`,
`user.consents`, `trigger.props`, `event.props`, `steps.<id>.result`) hold permissive sample
values; everything else is a strict map, so a typo such as `user.nmae` or a `vars.x` the send step
does not define is caught before a journey is published rather than when the first customer is
due a message. It is kept apart from the sandbox and rendering in `_templates` so that each of
the two stays a readable size; the permissive `_Sample` value alone is over a hundred lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from cjo.dsl._cel import expression_of

__all__ = ["sample_context"]

_SAMPLE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_SAMPLE_NOW = datetime(2026, 1, 1, 9, 0, tzinfo=_SAMPLE_TZ)


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
