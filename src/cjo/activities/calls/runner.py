"""Running registered `call` activities: validated, set-based, and once per key.

`calls.run` takes a page of requests, validates each one's parameters with the model its
activity declared, calls each activity's handler once for all of that activity's requests
and checks the handler kept its declaration (one result per request, declared outcomes).

Idempotency goes through `activity_receipts`, shared with the other activities that have
no table of their own to hold a unique key (`profiles.update`): `run_once` claims the
keys, runs the work for the keys claimed and stores each result, all in one transaction.
A repeated key gets the stored result and the work is not done again; a concurrent run of
the same key waits for the first to commit and then gets its result; a run that fails
leaves no receipt, so a retry does the work.

Errors::

    ActivityError
    ├── UnknownActivityError     no activity is registered under the requested name
    ├── InvalidCallParamsError   the parameters do not fit the declared model
    └── CallContractError        a handler broke its declaration (result count, outcome)
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity

from cjo.activities._base import ActivityError
from cjo.activities.calls.catalog import default_registry
from cjo.activities.calls.registry import (
    ActivityRegistry,
    CallRequest,
    CallResult,
    RegisteredActivity,
)
from cjo.steps.contracts import CallOutcome, CallSpec, RunCallsInput, RunCallsResult
from cjo.store.db import SessionFactory, transaction

Receipt = dict[str, Any]
Perform = Callable[[list[str]], Awaitable[Mapping[str, Receipt]]]


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: `field: problem; other.field: problem`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(value)'}: {problem['msg']}"
        for problem in error.errors()
    )


async def run_once(
    connection: AsyncConnection, activity_name: str, keys: Sequence[str], perform: Perform
) -> dict[str, Receipt]:
    """Each key's result: `perform`'s for keys never seen before, the stored one for the rest.

    Call inside a transaction: the receipts commit with the work `perform` does.
    """
    # Claiming in key order keeps two overlapping pages from waiting on each other in a cycle.
    claimed = await connection.execute(
        text(
            "INSERT INTO activity_receipts (key, activity) "
            "SELECT key, :activity FROM unnest(CAST(:keys AS text[])) AS key ORDER BY key "
            "ON CONFLICT (key) DO NOTHING RETURNING key"
        ),
        {"activity": activity_name, "keys": sorted(set(keys))},
    )
    fresh_keys = sorted(claimed.scalars())
    results: dict[str, Receipt] = {}
    if fresh_keys:
        results.update(await perform(fresh_keys))
        await connection.execute(
            text(
                "UPDATE activity_receipts AS receipt SET result = given.value "
                "FROM jsonb_each(CAST(:results AS jsonb)) AS given "
                "WHERE receipt.key = given.key"
            ),
            {"results": json.dumps(results)},
        )
    earlier = [key for key in keys if key not in results]
    if earlier:
        stored = await connection.execute(
            text(
                "SELECT key, result FROM activity_receipts WHERE key = ANY(CAST(:keys AS text[]))"
            ),
            {"keys": earlier},
        )
        results.update({row.key: row.result for row in stored})
    return results


class UnknownActivityError(ActivityError):
    pass


class InvalidCallParamsError(ActivityError):
    pass


class CallContractError(ActivityError):
    pass


class CallActivities:
    """Runs the activities engineers registered for journeys' `call` steps."""

    def __init__(self, sessions: SessionFactory, registry: ActivityRegistry | None = None) -> None:
        self._sessions = sessions
        self._registry = registry if registry is not None else default_registry()

    @activity.defn(name="calls.run")
    async def run(self, data: RunCallsInput) -> RunCallsResult:
        first_of_key: dict[str, CallSpec] = {}
        for spec in data.requests:
            first_of_key.setdefault(spec.key, spec)

        async def perform(keys: list[str]) -> dict[str, Receipt]:
            fresh = set(keys)
            return await self._call([spec for key, spec in first_of_key.items() if key in fresh])

        # The transaction stays open while handlers run, so that a concurrent run of the same
        # key waits on its receipt instead of calling the handler a second time.
        async with transaction(self._sessions) as connection:
            receipts = await run_once(connection, "calls.run", list(first_of_key), perform)
        return RunCallsResult(
            results=[CallOutcome(key=spec.key, **receipts[spec.key]) for spec in data.requests]
        )

    async def _call(self, specs: Sequence[CallSpec]) -> dict[str, Receipt]:
        groups: dict[str, list[CallSpec]] = defaultdict(list)
        for spec in specs:
            groups[spec.activity].append(spec)
        # Every request is checked before any handler runs, so bad input has no side effects.
        batches: list[tuple[RegisteredActivity, list[CallSpec], list[CallRequest[Any]]]] = []
        for name, group in groups.items():
            registered = self._registry.get(name)
            if registered is None:
                raise UnknownActivityError(f"no activity is registered as '{name}'")
            batches.append((registered, group, [_request(registered, spec) for spec in group]))
        receipts: dict[str, Receipt] = {}
        for registered, group, requests in batches:
            receipts.update(_check(registered, group, await registered.handler(requests)))
        return receipts


def _request(registered: RegisteredActivity, spec: CallSpec) -> CallRequest[Any]:
    declaration = registered.declaration
    try:
        params = declaration.params.model_validate(spec.params)
    except ValidationError as error:
        raise InvalidCallParamsError(
            f"{declaration.name} (key {spec.key}): bad parameters: {describe(error)}"
        ) from None
    return CallRequest(key=spec.key, user_id=spec.user_id, params=params, profile=spec.profile)


def _check(
    registered: RegisteredActivity, specs: Sequence[CallSpec], results: Sequence[CallResult]
) -> dict[str, Receipt]:
    declaration = registered.declaration
    if len(results) != len(specs):
        raise CallContractError(
            f"{declaration.name} returned {len(results)} results for {len(specs)} requests"
        )
    receipts: dict[str, Receipt] = {}
    for spec, result in zip(specs, results, strict=True):
        if result.outcome not in declaration.outcomes:
            raise CallContractError(
                f"{declaration.name} answered '{result.outcome}' for key {spec.key}; "
                f"it declares {', '.join(declaration.outcomes)}"
            )
        try:
            # Stored as JSON, so the first answer and a repeated one are the same values.
            detail = to_jsonable_python(result.result)
        except PydanticSerializationError as error:
            raise CallContractError(
                f"{declaration.name} returned a result for key {spec.key} that is not JSON: {error}"
            ) from None
        receipts[spec.key] = {"outcome": result.outcome, "result": detail}
    return receipts
