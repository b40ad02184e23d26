"""`calls.run` on a real PostgreSQL: validated, grouped per activity, once per key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from sqlmodel import select

from cjo.activities.calls.registry import ActivityRegistry, CallRequest, CallResult
from cjo.activities.calls.runner import (
    CallActivities,
    CallContractError,
    InvalidCallParamsError,
    UnknownActivityError,
)
from cjo.steps.contracts import CallSpec, RunCallsInput
from cjo.store.db import SessionFactory
from cjo.store.schema import ActivityReceipt


async def receipts(sessions: SessionFactory) -> dict[str, dict[str, Any]]:
    async with sessions() as session:
        rows = (await session.exec(select(ActivityReceipt))).all()
    return {row.key: row.result for row in rows if row.activity == "calls.run"}


def spec(key: str, activity: str, user_id: str = "u1", **params: Any) -> CallSpec:
    return CallSpec(key=key, activity=activity, params=params, user_id=user_id)


async def run(activities: CallActivities, *specs: CallSpec) -> list[tuple[str, str, Any]]:
    result = await activities.run(RunCallsInput(requests=list(specs)))
    return [(outcome.key, outcome.outcome, outcome.result) for outcome in result.results]


async def test_the_shipped_pick_tutorial_activity_runs_and_is_recorded(
    sessions: SessionFactory,
) -> None:
    calls = CallActivities(sessions)  # the default registry, with what CJO ships
    outcomes = await run(
        calls,
        spec("k1", "onboarding.pick_tutorial", features_used=6, days_since_install=20),
        spec("k2", "onboarding.pick_tutorial", "u2", features_used=1, days_since_install=10),
    )
    assert outcomes == [
        ("k1", "advanced", {"track": "advanced", "pace": 0.3}),
        ("k2", "basic", {"track": "basic", "pace": 0.1}),
    ]
    assert await receipts(sessions) == {
        "k1": {"outcome": "advanced", "result": {"track": "advanced", "pace": 0.3}},
        "k2": {"outcome": "basic", "result": {"track": "basic", "pace": 0.1}},
    }


async def test_bad_parameters_fail_without_a_receipt(sessions: SessionFactory) -> None:
    calls = CallActivities(sessions)
    with pytest.raises(InvalidCallParamsError) as raised:
        await run(
            calls,
            spec("k1", "onboarding.pick_tutorial", features_used=1, days_since_install=1),
            spec("k2", "onboarding.pick_tutorial", features_used=-1, colour="red"),
        )
    message = raised.value.message
    assert message.startswith("onboarding.pick_tutorial (key k2): bad parameters:")
    assert "features_used: Input should be greater than or equal to 0" in message
    assert "days_since_install: Field required" in message
    assert "colour: Extra inputs are not permitted" in message
    assert raised.value.non_retryable
    assert await receipts(sessions) == {}


async def test_an_unknown_activity_is_a_permanent_failure(sessions: SessionFactory) -> None:
    with pytest.raises(UnknownActivityError, match="no activity is registered as 'crm.nope'"):
        await run(CallActivities(sessions), spec("k1", "crm.nope"))


class ScoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int


class Counting:
    """A test-local registry whose activities count the requests their handlers see."""

    def __init__(self) -> None:
        self.registry = ActivityRegistry()
        self.batches: list[list[str]] = []
        self.fail_next = False
        self.registry.register("test.score", params=ScoreParams, outcomes=("high", "low"))(
            self.score
        )
        self.registry.register("test.echo", params=ScoreParams)(self.echo)

    async def score(self, requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
        self.batches.append([request.key for request in requests])
        # Let concurrent runs of the same key interleave here if they could.
        await asyncio.sleep(0.01)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the scoring service went away")
        return [
            CallResult(
                "high" if r.params.points >= 10 else "low",
                {"points": r.params.points, "user": r.user_id, "tier": r.profile.get("tier")},
            )
            for r in requests
        ]

    async def echo(self, requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
        self.batches.append([request.key for request in requests])
        return [CallResult("ok", {"at": datetime(2026, 1, 1, tzinfo=UTC)}) for _ in requests]


async def test_a_repeated_key_returns_the_stored_outcome_without_a_second_call(
    sessions: SessionFactory,
) -> None:
    counting = Counting()
    calls = CallActivities(sessions, counting.registry)
    first = await run(
        calls,
        CallSpec(
            key="k1",
            activity="test.score",
            params={"points": 12},
            user_id="u1",
            profile={"tier": "gold"},
        ),
        spec("k2", "test.score", "u2", points=3),
        spec("k3", "test.echo", points=0),
        spec("k1", "test.score", points=99),  # the same key again in the page: same answer
    )
    assert first == [
        ("k1", "high", {"points": 12, "user": "u1", "tier": "gold"}),
        ("k2", "low", {"points": 3, "user": "u2", "tier": None}),
        ("k3", "ok", {"at": "2026-01-01T00:00:00Z"}),
        ("k1", "high", {"points": 12, "user": "u1", "tier": "gold"}),
    ]
    # One handler call per activity for the whole page.
    assert counting.batches == [["k1", "k2"], ["k3"]]

    second = await run(
        calls, spec("k2", "test.score", points=50), spec("k4", "test.score", points=10)
    )
    assert second == [first[1], ("k4", "high", {"points": 10, "user": "u1", "tier": None})]
    assert counting.batches == [["k1", "k2"], ["k3"], ["k4"]]
    assert sorted(await receipts(sessions)) == ["k1", "k2", "k3", "k4"]


async def test_concurrent_runs_of_one_key_call_the_handler_once(sessions: SessionFactory) -> None:
    counting = Counting()
    calls = CallActivities(sessions, counting.registry)
    answers = await asyncio.gather(
        *(run(calls, spec("same", "test.score", f"u{n}", points=n)) for n in range(12))
    )
    assert counting.batches == [["same"]]
    assert all(answer == answers[0] for answer in answers)
    assert list(await receipts(sessions)) == ["same"]


async def test_a_failed_handler_leaves_no_receipt_so_a_retry_calls_again(
    sessions: SessionFactory,
) -> None:
    counting = Counting()
    calls = CallActivities(sessions, counting.registry)
    counting.fail_next = True
    with pytest.raises(ConnectionError):
        await run(calls, spec("k1", "test.score", points=1))
    assert await receipts(sessions) == {}
    assert await run(calls, spec("k1", "test.score", points=1)) == [
        ("k1", "low", {"points": 1, "user": "u1", "tier": None})
    ]
    assert counting.batches == [["k1"], ["k1"]]


async def test_handlers_that_break_their_declaration_are_caught(sessions: SessionFactory) -> None:
    registry = ActivityRegistry()

    @registry.register("test.short", params=ScoreParams)
    async def short(requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
        return [CallResult("ok")]

    @registry.register("test.surprise", params=ScoreParams, outcomes=("yes", "no"))
    async def surprise(requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
        return [CallResult("maybe") for _ in requests]

    @registry.register("test.opaque", params=ScoreParams)
    async def opaque(requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
        return [CallResult("ok", {"thing": object()}) for _ in requests]

    calls = CallActivities(sessions, registry)
    with pytest.raises(CallContractError, match="test.short returned 1 results for 2 requests"):
        await run(calls, spec("a", "test.short", points=1), spec("b", "test.short", points=2))
    with pytest.raises(
        CallContractError, match="test.surprise answered 'maybe' for key c; it declares yes, no"
    ):
        await run(calls, spec("c", "test.surprise", points=1))
    with pytest.raises(CallContractError, match="test.opaque returned a result for key d"):
        await run(calls, spec("d", "test.opaque", points=1))
    assert await receipts(sessions) == {}
