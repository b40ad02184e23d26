"""Risk policies evaluated for pages of users: lists, velocity, conditions, severity."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import func, select

from cjo.activities.risk.policies import (
    InvalidRiskPolicyError,
    RiskActivities,
    RiskListItem,
    UpdateRiskListInput,
)
from cjo.steps.contracts import EvaluateRiskInput, RiskRequest
from cjo.store.db import SessionFactory
from cjo.store.schema import Event, Grant, Message, Profile, RiskDecision

NOW = datetime(2026, 12, 28, 4, 0, tzinfo=UTC)
LINE = "credit-card"

# r1 and r2 share a phone; r1 and r3 share a device; r4 has neither phone nor device.
PROFILES: list[dict[str, Any]] = [
    {"id": "r1", "phone": "13800000001", "attrs": {"device_id": "dev-a", "risk_score": 85}},
    {"id": "r2", "phone": "13800000001", "attrs": {"device_id": "dev-b", "risk_score": 10}},
    {"id": "r3", "phone": "13800000003", "attrs": {"device_id": "dev-a", "risk_score": 50}},
    {"id": "r4", "attrs": {"risk_score": "95"}},
    {"id": "r5", "phone": "13900000005", "attrs": {"device_id": "dev-c"}, "tags": ["staff"]},
]
USERS = [profile["id"] for profile in PROFILES]


async def _load(sessions: SessionFactory, *rows: Any) -> None:
    async with sessions() as session, session.begin():
        session.add_all(Profile(**profile) for profile in PROFILES)
        await session.flush()
        session.add_all(rows)


def _grant(user_id: str, hours_ago: float, *, line: str = LINE) -> Grant:
    number = f"{user_id}-{hours_ago}-{line}"
    return Grant(
        id=number,
        key=number,
        business_line=line,
        benefit="cashback",
        benefit_version="v1",
        user_id=user_id,
        quantity=1,
        unit_value=Decimal(20),
        value=Decimal(20),
        unit="CNY",
        benefit_type="cashback",
        code=number,
        granted_at=NOW - timedelta(hours=hours_ago),
    )


def _message(user_id: str, hours_ago: float, status: str = "sent") -> Message:
    number = f"{user_id}-{hours_ago}-{status}"
    return Message(
        id=number,
        key=number,
        business_line=LINE,
        user_id=user_id,
        channel="sms",
        template="welcome",
        status=status,
        created_at=NOW - timedelta(hours=hours_ago),
    )


def _event(user_id: str, name: str, hours_ago: float) -> Event:
    return Event(
        client_id=f"{user_id}-{name}-{hours_ago}",
        user_id=user_id,
        name=name,
        ts=NOW - timedelta(hours=hours_ago),
    )


def _requests(
    rules: list[dict[str, Any]],
    users: list[str] = USERS,
    *,
    default: str = "pass",
    segments: dict[str, Any] | None = None,
    tag: str = "1",
) -> EvaluateRiskInput:
    spec = {"rules": rules, "default": default}
    return EvaluateRiskInput(
        requests=[
            RiskRequest(
                key=f"journey/{LINE}/apply/{user}/risk/{tag}",
                user_id=user,
                business_line=LINE,
                policy="new-card-abuse",
                policy_version="v7",
                spec=spec,
                segments=segments or {},
                at=NOW,
            )
            for user in users
        ]
    )


async def _outcomes(
    sessions: SessionFactory, rules: list[dict[str, Any]], **options: Any
) -> dict[str, tuple[str, list[str]]]:
    result = await RiskActivities(sessions).evaluate(_requests(rules, **options))
    return {verdict.user_id: (verdict.outcome, verdict.matched) for verdict in result.results}


async def _block(
    sessions: SessionFactory, *values: str, line: str = LINE, name: str = "blocklist"
) -> None:
    items = [RiskListItem(value=value, reason="fraud ring") for value in values]
    await RiskActivities(sessions).update_list(
        UpdateRiskListInput(business_line=line, risk_list=name, add=items, at=NOW)
    )


async def test_list_hit_on_a_cel_key(sessions: SessionFactory) -> None:
    await _load(sessions)
    await _block(sessions, "13800000001")
    # Same value on another list, and on this list in another business line: no hit.
    await _block(sessions, "13800000003", name="watchlist")
    await _block(sessions, "13900000005", line="retail")
    rules = [
        {"id": "blocklisted", "if": {"list": "blocklist", "key": "user.phone"}, "then": "reject"}
    ]
    assert await _outcomes(sessions, rules) == {
        "r1": ("reject", ["blocklisted"]),
        "r2": ("reject", ["blocklisted"]),
        "r3": ("pass", []),
        "r4": ("pass", []),  # no phone: the key is null and matches nothing
        "r5": ("pass", []),
    }


async def test_list_key_on_attrs_and_a_failing_expression(sessions: SessionFactory) -> None:
    await _load(sessions)
    await _block(sessions, "dev-c", name="bad-devices")
    rules = [
        {
            "id": "bad-device",
            "if": {"list": "bad-devices", "key": "user.attrs.device_id"},
            "then": "review",
        }
    ]
    outcomes = await _outcomes(sessions, rules)
    assert outcomes["r5"] == ("review", ["bad-device"])
    assert {user for user, (outcome, _) in outcomes.items() if outcome == "pass"} == {
        "r1",
        "r2",
        "r3",
        "r4",
    }
    async with sessions() as session:
        r4 = (await session.exec(select(RiskDecision).where(RiskDecision.user_id == "r4"))).one()
    # r4 has no device_id: CEL raises, the rule does not match, and the reason is kept.
    assert "bad-device" in r4.detail["errors"]


async def test_update_list_adds_and_removes_once(sessions: SessionFactory) -> None:
    risk = RiskActivities(sessions)
    items = [RiskListItem(value="13800000001"), RiskListItem(value="13800000002", reason="x")]
    add = UpdateRiskListInput(business_line=LINE, risk_list="blocklist", add=items, at=NOW)
    assert (await risk.update_list(add)).added == 2
    assert (await risk.update_list(add)).added == 0
    remove = UpdateRiskListInput(
        business_line=LINE, risk_list="blocklist", remove=["13800000001", "nope"], at=NOW
    )
    assert (await risk.update_list(remove)).removed == 1
    assert (await risk.update_list(remove)).removed == 0
    await _load(sessions)
    rules = [{"id": "blocked", "if": {"list": "blocklist", "key": "user.phone"}, "then": "reject"}]
    assert (await _outcomes(sessions, rules))["r1"] == ("pass", [])


async def test_velocity_of_grants_by_user(sessions: SessionFactory) -> None:
    await _load(
        sessions,
        _grant("r1", 1),
        _grant("r1", 23),
        _grant("r1", 30),  # outside the 24h window
        _grant("r2", 2),
        _grant("r2", 3, line="retail"),  # another business line
        _grant("r3", 1),
        _grant("r3", 2),
        _grant("r3", -1),  # after "now"
    )
    rules = [
        {
            "id": "grant-velocity",
            "if": {"velocity": {"of": "grants", "by": "user", "max": 2, "within": "24h"}},
            "then": "review",
        }
    ]
    outcomes = await _outcomes(sessions, rules)
    assert {user for user, (outcome, _) in outcomes.items() if outcome == "review"} == {"r1", "r3"}


async def test_velocity_of_sends_by_phone_counts_every_sharer(sessions: SessionFactory) -> None:
    await _load(
        sessions,
        _message("r1", 1),
        _message("r2", 2),
        _message("r2", 3, status="suppressed"),  # never reached anyone: not a send
        _message("r3", 1),
        _message("r4", 1),
        _message("r4", 2),
    )
    rules = [
        {
            "id": "sms-flood",
            "if": {"velocity": {"of": "sends", "by": "phone", "max": 2, "within": "1d"}},
            "then": "reject",
        }
    ]
    outcomes = await _outcomes(sessions, rules)
    # r1 and r2 share a phone: 2 sends each way. r3 alone has 1. r4 has no phone: its own 2.
    assert outcomes == {
        "r1": ("reject", ["sms-flood"]),
        "r2": ("reject", ["sms-flood"]),
        "r3": ("pass", []),
        "r4": ("reject", ["sms-flood"]),
        "r5": ("pass", []),
    }


async def test_velocity_of_events_by_device_across_users(sessions: SessionFactory) -> None:
    await _load(
        sessions,
        _event("r1", "login", 0.1),
        _event("r1", "login", 0.5),
        _event("r3", "login", 0.2),
        _event("r3", "view", 0.2),  # another event: not counted
        _event("r3", "login", 2),  # outside the hour
        _event("r2", "login", 0.1),
        _event("r5", "view", 0.1),
        _event("r5", "view", 0.2),
        _event("r5", "view", 0.3),
    )
    rules = [
        {
            "id": "device-logins",
            "if": {
                "velocity": {
                    "of": "events",
                    "event": "login",
                    "by": "device_id",
                    "max": 3,
                    "within": "1h",
                }
            },
            "then": "review",
        },
        {
            "id": "any-events",
            "if": {"velocity": {"of": "events", "by": "device_id", "max": 3, "within": "1h"}},
            "then": "review",
        },
    ]
    outcomes = await _outcomes(sessions, rules)
    # dev-a: r1's two logins and r3's one; r5 (dev-c) viewed three times.
    assert outcomes == {
        "r1": ("review", ["device-logins", "any-events"]),
        "r2": ("pass", []),
        "r3": ("review", ["device-logins", "any-events"]),
        "r4": ("pass", []),
        "r5": ("review", ["any-events"]),
    }


async def test_segment_condition_rules(sessions: SessionFactory) -> None:
    await _load(sessions)
    rules = [
        # r4's "95" is a string, so it is not a score of 80 or more.
        {"id": "high-score", "if": {"attr": "risk_score", "gte": 80}, "then": "reject"},
        {"id": "staff", "if": {"segment": "employees"}, "then": "review"},
    ]
    segments = {"employees": {"match": {"tag": "staff"}}}
    assert await _outcomes(sessions, rules, segments=segments) == {
        "r1": ("reject", ["high-score"]),
        "r2": ("pass", []),
        "r3": ("pass", []),
        "r4": ("pass", []),
        "r5": ("review", ["staff"]),
    }


async def test_most_severe_matched_action_wins_else_default(sessions: SessionFactory) -> None:
    await _load(sessions)
    rules = [
        {"id": "trusted", "if": {"attr": "phone", "exists": True}, "then": "pass"},
        {"id": "mid-score", "if": {"attr": "risk_score", "gte": 40}, "then": "review"},
        {"id": "top-score", "if": {"attr": "risk_score", "gte": 80}, "then": "reject"},
    ]
    assert await _outcomes(sessions, rules, default="review") == {
        "r1": ("reject", ["trusted", "mid-score", "top-score"]),
        "r2": ("pass", ["trusted"]),  # a matched pass beats the default review
        "r3": ("review", ["trusted", "mid-score"]),
        "r4": ("review", []),  # nothing matched: the default
        "r5": ("pass", ["trusted"]),
    }


async def test_decision_is_recorded_with_matched_rules(sessions: SessionFactory) -> None:
    await _load(sessions, _grant("r1", 1))
    rules = [
        {"id": "top-score", "if": {"attr": "risk_score", "gte": 80}, "then": "reject"},
        {
            "id": "grants",
            "if": {"velocity": {"of": "grants", "max": 1, "within": "1d"}},
            "then": "review",
        },
    ]
    result = await RiskActivities(sessions).evaluate(_requests(rules, ["r1"]))
    verdict = result.results[0]
    async with sessions() as session:
        stored = await session.get(RiskDecision, verdict.decision_id)
    assert stored is not None
    assert (stored.key, stored.user_id, stored.outcome, stored.matched) == (
        f"journey/{LINE}/apply/r1/risk/1",
        "r1",
        "reject",
        ["top-score", "grants"],
    )
    assert (stored.business_line, stored.policy, stored.policy_version, stored.at) == (
        LINE,
        "new-card-abuse",
        "v7",
        NOW,
    )
    assert stored.detail["counts"] == {"grants": 1}


async def _decision_count(sessions: SessionFactory) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(RiskDecision))).one()


async def test_repeating_a_key_returns_the_first_decision(sessions: SessionFactory) -> None:
    await _load(sessions)
    risk = RiskActivities(sessions)
    rules = [{"id": "blocked", "if": {"list": "blocklist", "key": "user.phone"}, "then": "reject"}]
    first = await risk.evaluate(_requests(rules))
    assert {v.outcome for v in first.results} == {"pass"}
    await _block(sessions, "13800000001")  # would now reject r1 and r2
    again = await risk.evaluate(_requests(rules))
    assert again == first
    assert await _decision_count(sessions) == len(USERS)
    fresh = await risk.evaluate(_requests(rules, ["r1"], tag="2"))
    assert fresh.results[0].outcome == "reject"


async def test_concurrent_and_duplicate_keys_decide_once(sessions: SessionFactory) -> None:
    await _load(sessions, _grant("r1", 1))
    rules = [
        {
            "id": "grants",
            "if": {"velocity": {"of": "grants", "max": 1, "within": "1d"}},
            "then": "review",
        }
    ]
    page = _requests(rules, ["r1", "r2", "r1"])
    results = await asyncio.gather(*(RiskActivities(sessions).evaluate(page) for _ in range(6)))
    assert all(result == results[0] for result in results)
    first = results[0].results
    assert [v.outcome for v in first] == ["review", "pass", "review"]
    assert first[0].decision_id == first[2].decision_id
    assert await _decision_count(sessions) == 2


async def test_invalid_policy_is_a_permanent_error(sessions: SessionFactory) -> None:
    with pytest.raises(InvalidRiskPolicyError):
        await RiskActivities(sessions).evaluate(_requests([{"id": "x", "if": {}, "then": "nope"}]))


async def test_list_key_from_the_trigger_event(sessions: SessionFactory) -> None:
    await _load(sessions)
    await _block(sessions, "6222000011112222", name="stolen-cards")
    spec = {
        "rules": [
            {
                "id": "stolen",
                "if": {"list": "stolen-cards", "key": "trigger.props.card"},
                "then": "reject",
            }
        ]
    }

    def request(user_id: str, card: str) -> RiskRequest:
        trigger = {"name": "card_issued", "props": {"card": card}, "ts": NOW}
        return RiskRequest(
            key=f"journey/{LINE}/issue/{user_id}/risk/1",
            user_id=user_id,
            business_line=LINE,
            policy="stolen-cards",
            spec=spec,
            context={"trigger": trigger},
            at=NOW,
        )

    page = EvaluateRiskInput(
        requests=[request("r1", "6222000011112222"), request("r2", "6222000099990000")]
    )
    result = await RiskActivities(sessions).evaluate(page)
    assert [(v.user_id, v.outcome, v.matched) for v in result.results] == [
        ("r1", "reject", ["stolen"]),
        ("r2", "pass", []),
    ]


async def test_a_large_page_is_decided_in_one_call(sessions: SessionFactory) -> None:
    await _load(sessions)
    # More rows than one statement's 65,535 parameters could carry in a single VALUES list.
    users = [f"page-{number}" for number in range(8000)] + ["r1"]
    rules = [{"id": "top-score", "if": {"attr": "risk_score", "gte": 80}, "then": "reject"}]
    result = await RiskActivities(sessions).evaluate(_requests(rules, users))
    assert len(result.results) == len(users)
    assert [v.user_id for v in result.results if v.outcome == "reject"] == ["r1"]
    assert await _decision_count(sessions) == len(users)
