"""The registry through which engineers add activities that journeys run with `call`.

An activity declares its name, a pydantic model of its parameters and the
outcomes it can produce. The DSL validator checks `call` steps against these
declarations (E220 for an unknown name, E110 for bad `with` parameters), and
journeys route on the declared outcomes.

Activities are set-based like every other side effect: the handler takes a
list of requests and returns one result per request, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from cjo.dsl import ActivityDeclaration

ParamsT = TypeVar("ParamsT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class CallRequest(Generic[ParamsT]):
    """One user's call: `key` is the idempotency key `<workflow id>/<step id>/<visit>`."""

    key: str
    user_id: str
    params: ParamsT
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallResult:
    outcome: str
    result: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Sequence[CallRequest[Any]]], Awaitable[list[CallResult]]]


class DuplicateActivityError(ValueError):
    """Two activities were registered under one name."""


@dataclass(frozen=True, slots=True)
class RegisteredActivity:
    declaration: ActivityDeclaration
    handler: Handler


@dataclass
class ActivityRegistry:
    _activities: dict[str, RegisteredActivity] = field(default_factory=dict)

    def register(
        self,
        name: str,
        *,
        params: type[BaseModel],
        outcomes: Sequence[str] = ("ok",),
        description: str = "",
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("crm.create_task", params=TaskParams, outcomes=...)`."""
        if not outcomes:
            raise ValueError(f"activity {name} must declare at least one outcome")

        def decorate(handler: Handler) -> Handler:
            if name in self._activities:
                raise DuplicateActivityError(f"activity {name} is already registered")
            declaration = ActivityDeclaration(name, params, tuple(outcomes), description)
            self._activities[name] = RegisteredActivity(declaration, handler)
            return handler

        return decorate

    def get(self, name: str) -> RegisteredActivity | None:
        return self._activities.get(name)

    def declarations(self) -> list[ActivityDeclaration]:
        return [self._activities[name].declaration for name in sorted(self._activities)]


REGISTRY = ActivityRegistry()
register = REGISTRY.register
