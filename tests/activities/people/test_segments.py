"""Segments against a hand-built population whose memberships were worked out by hand.

"Now" is 2026-12-28 12:00 in Asia/Shanghai (04:00 UTC), so 7-day anniversaries cross the
year end. Each case's comment says which users match and why.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from cjo.activities.people.segments import (
    CountSegmentInput,
    InvalidConditionError,
    SampleSegmentInput,
    SegmentActivities,
    SegmentCycleError,
    SnapshotSegmentInput,
    UnknownSegmentError,
)
from cjo.steps.contracts import CheckMembershipInput
from cjo.store.db import SessionFactory
from cjo.store.schema import AudienceMember, AudienceSnapshot, Event, Profile

NOW = datetime(2026, 12, 28, 4, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


PROFILES: list[dict[str, Any]] = [
    {
        "id": "u01",
        "name": "张三",
        "phone": "13812345678",
        "email": "zhang.san@example.com",
        "timezone": "Asia/Shanghai",
        "birthday": date(1990, 12, 28),
        "created_at": _at("2026-12-20T00:00:00+00:00"),
        "lifecycle": "new",
        "tags": ["payroll", "vip"],
        "attrs": {
            "aum": 80000,
            "vip": True,
            "city": "Shanghai",
            "interests": ["golf", "fund"],
            "opened": "2026-12-01",
            "device_id": "d1",
        },
    },
    {
        "id": "u02",
        "name": "李四",
        "phone": "13900000002",
        "email": "li.si@example.com",
        "birthday": date(1985, 1, 3),
        "created_at": _at("2024-01-01T00:00:00+00:00"),
        "lifecycle": "dormant",
        "tags": ["payroll"],
        "attrs": {"aum": "60000", "city": "Beijing", "opened": "2020-03-15"},
    },
    {
        "id": "u03",
        "name": "Alice Wong",
        "phone": "+1 555 0100",
        "email": "alice@example.org",
        "locale": "en",
        "timezone": "America/New_York",
        "birthday": date(1992, 1, 5),
        "created_at": _at("2025-06-01T00:00:00+00:00"),
        "lifecycle": "mature",
        "tags": [],
        "attrs": {"aum": 50000, "vip": False, "score": 7.5, "opened": "2026-12-27T23:30:00+00:00"},
    },
    {
        "id": "u04",
        "name": "王小明",
        "created_at": _at("2026-11-29T00:00:00+00:00"),
        "lifecycle": "churned",
        "tags": ["vip"],
        "attrs": {},
    },
    {
        "id": "u05",
        "name": "Bob",
        "phone": "13700000005",
        "locale": "en",
        "birthday": date(2000, 2, 29),
        "created_at": _at("2020-12-31T00:00:00+00:00"),
        "lifecycle": "growing",
        "tags": ["payroll", "student"],
        "attrs": {"aum": 1000, "city": "Shanghai Pudong", "interests": "golf club", "score": 9},
    },
    {
        "id": "u06",
        "name": "赵六",
        "phone": "13600000006",
        "birthday": date(1970, 12, 27),
        # 01:00 on 28 December in Shanghai: created today, so no anniversary yet.
        "created_at": _at("2026-12-27T17:00:00+00:00"),
        "lifecycle": "new",
        "tags": [],
        "attrs": {"aum": 49999.99, "opened": "not a date"},
    },
    {
        "id": "u07",
        "name": "钱七",
        "birthday": date(1999, 6, 15),
        # 28 December in Shanghai, still 27 December in UTC.
        "created_at": _at("2021-12-27T20:00:00+00:00"),
        "lifecycle": "dormant",
        "tags": ["student"],
        "attrs": {"aum": None, "score": "9"},
    },
    {
        "id": "u08",
        "name": "孙八",
        "phone": "13800000008",
        "birthday": date(1988, 1, 4),
        "created_at": _at("2022-12-28T00:00:00+00:00"),
        "lifecycle": "mature",
        "tags": ["payroll"],
        "attrs": {"aum": 120000, "vip": "true", "city": "shanghai"},
    },
    {
        "id": "u09",
        "name": "周九",
        "birthday": date(1995, 1, 1),
        "created_at": _at("2023-03-03T00:00:00+00:00"),
        "lifecycle": "growing",
        "tags": ["vip", "payroll"],
        "attrs": {"aum": [60000], "interests": ["fund"]},
    },
    {
        "id": "u10",
        "name": "吴十",
        "birthday": date(1980, 12, 31),
        "created_at": _at("2026-10-01T00:00:00+00:00"),
        "lifecycle": "churned",
        "tags": [],
        "attrs": {"aum": 75000, "score": 3},
    },
    {
        "id": "u11",
        "name": "郑十一",
        "birthday": date(2001, 3, 1),
        "created_at": _at("2019-02-28T00:00:00+00:00"),
        "lifecycle": "new",
        "tags": ["student"],
        "attrs": {"aum": 0, "vip": True},
    },
    {
        "id": "u12",
        "name": "冯十二",
        "birthday": date(1979, 12, 29),
        "created_at": _at("2026-12-28T03:00:00+00:00"),
        "lifecycle": "mature",
        "tags": ["payroll", "vip"],
        "attrs": {"aum": 200000, "city": "Shenzhen"},
    },
]
ALL_IDS = [profile["id"] for profile in PROFILES]

# (event, user, days from NOW, props)
EVENTS: list[tuple[str, str, float, dict[str, Any]]] = [
    ("login", "u01", -10, {}),
    ("login", "u02", -100, {}),
    ("login", "u03", -89, {}),
    ("login", "u05", 1, {}),  # after "now": never counts
    ("login", "u08", -1, {}),
    ("login", "u10", -91, {}),
    ("login", "u12", -2 / 24, {}),
    ("fund_purchase", "u01", -5, {"amount": 500}),
    ("fund_purchase", "u01", -6, {"amount": 1500}),
    ("fund_purchase", "u01", -7, {"amount": 2000, "currency": "CNY"}),
    ("fund_purchase", "u03", -3, {"amount": 1000}),
    ("fund_purchase", "u03", -4, {"amount": "5000"}),
    ("fund_purchase", "u05", -2, {"amount": 1200}),
    ("fund_purchase", "u05", -40, {"amount": 3000}),
    ("fund_purchase", "u08", -1, {"amount": 999}),
    ("fund_purchase", "u08", -2, {"amount": 1000}),
    ("fund_purchase", "u08", -3, {"amount": 1001}),
    ("fund_purchase", "u08", -4, {"amount": 5000}),
    ("fund_purchase", "u12", -100, {"amount": 10000}),
]


async def load_population(sessions: SessionFactory) -> None:
    async with sessions() as session, session.begin():
        session.add_all(Profile(**profile) for profile in PROFILES)
        await session.flush()
        session.add_all(
            Event(
                client_id=f"e{index}",
                user_id=user,
                name=name,
                props=props,
                ts=NOW + timedelta(days=days),
            )
            for index, (name, user, days, props) in enumerate(EVENTS)
        )


REFERENCED = {
    "rich": {"match": {"attr": "aum", "gte": 50000}},
    "active": {"match": {"performed": {"event": "login", "within": "90d"}}},
    "rich-active": {"match": {"all": [{"segment": "rich"}, {"segment": "active"}]}},
    "rich-or-vip": {"match": {"any": [{"segment": "rich"}, {"tag": "vip"}]}},
}
RICH = {"u01", "u03", "u08", "u10", "u12"}
ACTIVE = {"u01", "u03", "u08", "u12"}


def _query(condition: dict[str, Any], *, at: datetime = NOW, timezone: str = TZ) -> dict[str, Any]:
    return {
        "segment": "case",
        "segments": {**REFERENCED, "case": {"match": condition}},
        "at": at,
        "timezone": timezone,
    }


async def members(
    sessions: SessionFactory,
    condition: dict[str, Any],
    *,
    at: datetime = NOW,
    timezone: str = TZ,
) -> set[str]:
    """The members by the membership check, cross-checked against the count."""
    segments = SegmentActivities(sessions)
    query = _query(condition, at=at, timezone=timezone)
    checked = await segments.check_membership(CheckMembershipInput(**query, user_ids=ALL_IDS))
    found = {user for user, member in zip(ALL_IDS, checked.members, strict=True) if member}
    counted = await segments.count(CountSegmentInput(**query))
    assert counted.count == len(found)
    return found


def _everyone_but(*excluded: str) -> set[str]:
    return set(ALL_IDS) - set(excluded)


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # --- attrs, typed by the YAML value: aum is 80000 u01, "60000" u02 (a string), 50000 u03,
    # missing u04, 1000 u05, 49999.99 u06, null u07, 120000 u08, [60000] u09 (an array),
    # 75000 u10, 0 u11, 200000 u12.
    ("aum gte", {"attr": "aum", "gte": 50000}, RICH),
    ("aum gt", {"attr": "aum", "gt": 50000}, {"u01", "u08", "u10", "u12"}),
    ("aum lt", {"attr": "aum", "lt": 50000}, {"u05", "u06", "u11"}),
    ("aum lte", {"attr": "aum", "lte": 1000}, {"u05", "u11"}),
    ("aum eq number", {"attr": "aum", "eq": 50000}, {"u03"}),
    # Neither the string "60000" nor the array [60000] equals the number.
    ("aum eq number no string", {"attr": "aum", "eq": 60000}, set()),
    ("aum eq string", {"attr": "aum", "eq": "60000"}, {"u02"}),
    ("aum ne", {"attr": "aum", "ne": 1000}, {"u01", "u03", "u06", "u08", "u10", "u11", "u12"}),
    ("aum in mixed", {"attr": "aum", "in": [0, 1000, "60000"]}, {"u11", "u05", "u02"}),
    ("aum not_in", {"attr": "aum", "not_in": [0, 1000]}, RICH | {"u06"}),
    ("aum between", {"attr": "aum", "between": [1000, 75000]}, {"u03", "u05", "u06", "u10"}),
    ("aum exists", {"attr": "aum", "exists": True}, _everyone_but("u04", "u07")),
    ("aum exists false", {"attr": "aum", "exists": False}, {"u04", "u07"}),
    # Two-valued NOT: the missing, null, string and array values are all "not >= 50000".
    ("not aum gte", {"not": {"attr": "aum", "gte": 50000}}, _everyone_but(*RICH)),
    ("not not aum gte", {"not": {"not": {"attr": "aum", "gte": 50000}}}, RICH),
    ("vip bool", {"attr": "vip", "eq": True}, {"u01", "u11"}),
    ("vip string", {"attr": "vip", "eq": "true"}, {"u08"}),
    ("vip ne bool", {"attr": "vip", "ne": True}, {"u03"}),
    ("city eq", {"attr": "city", "eq": "Shanghai"}, {"u01"}),
    ("city contains", {"attr": "city", "contains": "Shanghai"}, {"u01", "u05"}),
    ("city in", {"attr": "city", "in": ["Beijing", "Shenzhen"]}, {"u02", "u12"}),
    ("city not_in", {"attr": "city", "not_in": ["Beijing", "Shenzhen"]}, {"u01", "u05", "u08"}),
    # An array holds the element; a string holds the substring.
    ("interests contains golf", {"attr": "interests", "contains": "golf"}, {"u01", "u05"}),
    ("interests contains fund", {"attr": "interests", "contains": "fund"}, {"u01", "u09"}),
    ("score gt float", {"attr": "score", "gt": 5}, {"u03", "u05"}),
    # --- built-in columns
    (
        "lifecycle in",
        {"attr": "lifecycle", "in": ["dormant", "churned"]},
        {"u02", "u04", "u07", "u10"},
    ),
    ("lifecycle eq", {"attr": "lifecycle", "eq": "mature"}, {"u03", "u08", "u12"}),
    ("lifecycle ne", {"attr": "lifecycle", "ne": "new"}, _everyone_but("u01", "u06", "u11")),
    (
        "lifecycle not_in",
        {"attr": "lifecycle", "not_in": ["new", "mature"]},
        {"u02", "u04", "u05", "u07", "u09", "u10"},
    ),
    (
        "phone exists false",
        {"attr": "phone", "exists": False},
        {"u04", "u07", "u09", "u10", "u11", "u12"},
    ),
    ("phone contains", {"attr": "phone", "contains": "555"}, {"u03"}),
    ("email contains", {"attr": "email", "contains": "@example.com"}, {"u01", "u02"}),
    ("locale eq", {"attr": "locale", "eq": "en"}, {"u03", "u05"}),
    ("name eq", {"attr": "name", "eq": "Bob"}, {"u05"}),
    # Users with no email at all are "not li.si" too.
    ("not email eq", {"not": {"attr": "email", "eq": "li.si@example.com"}}, _everyone_but("u02")),
    ("id in", {"attr": "id", "in": ["u01", "u03", "nobody"]}, {"u01", "u03"}),
    ("timezone eq", {"attr": "timezone", "eq": "America/New_York"}, {"u03"}),
    ("birthday lt", {"attr": "birthday", "lt": "1980-01-01"}, {"u06", "u12"}),
    (
        "birthday between",
        {"attr": "birthday", "between": ["1985-01-01", "1990-12-31"]},
        {"u01", "u02", "u08"},
    ),
    ("birthday exists false", {"attr": "birthday", "exists": False}, {"u04"}),
    (
        "created_at gte",
        {"attr": "created_at", "gte": "2026-12-01T00:00:00+08:00"},
        {"u01", "u06", "u12"},
    ),
    # --- dates: within / older_than / anniversary
    ("birthday anniversary today", {"attr": "birthday", "anniversary": "today"}, {"u01"}),
    # 28 Dec .. 4 Jan: u01 12-28, u12 12-29, u10 12-31, u09 01-01, u02 01-03, u08 01-04;
    # not u06 (12-27, yesterday) nor u03 (01-05).
    (
        "birthday anniversary 7d across year end",
        {"attr": "birthday", "anniversary": "7d"},
        {"u01", "u02", "u08", "u09", "u10", "u12"},
    ),
    # u08 was created 28 Dec 2022; u07 on 28 Dec 2021 in Shanghai; u06 and u12 today (no
    # anniversary on the day itself).
    (
        "created_at anniversary today",
        {"attr": "created_at", "anniversary": "today"},
        {"u07", "u08"},
    ),
    (
        "created_at anniversary 7d",
        {"attr": "created_at", "anniversary": "7d"},
        {"u02", "u05", "u07", "u08"},
    ),
    (
        "created_at within 30d",
        {"attr": "created_at", "within": "30d"},
        {"u01", "u04", "u06", "u12"},
    ),
    ("created_at within 1d", {"attr": "created_at", "within": "1d"}, {"u06", "u12"}),
    (
        "created_at older_than",
        {"attr": "created_at", "older_than": "365d"},
        {"u02", "u03", "u05", "u07", "u08", "u09", "u11"},
    ),
    # attrs dates: a date-only string is midnight in the business line's zone; u06's
    # "not a date" never matches and never raises.
    ("opened within", {"attr": "opened", "within": "30d"}, {"u01", "u03"}),
    ("opened older_than", {"attr": "opened", "older_than": "365d"}, {"u02"}),
    (
        "not opened within",
        {"not": {"attr": "opened", "within": "30d"}},
        _everyone_but("u01", "u03"),
    ),
    # --- tags
    ("tag", {"tag": "payroll"}, {"u01", "u02", "u05", "u08", "u09", "u12"}),
    ("not tag", {"not": {"tag": "payroll"}}, {"u03", "u04", "u06", "u07", "u10", "u11"}),
    (
        "tags in",
        {"attr": "tags", "in": ["student", "vip"]},
        {"u01", "u04", "u05", "u07", "u09", "u11", "u12"},
    ),
    ("tags contains", {"attr": "tags", "contains": "vip"}, {"u01", "u04", "u09", "u12"}),
    ("tags exists false", {"attr": "tags", "exists": False}, {"u03", "u06", "u10"}),
    # --- performed. u05's login is tomorrow: it never counts.
    ("performed ever", {"performed": {"event": "login"}}, ACTIVE | {"u02", "u10"}),
    ("performed within", {"performed": {"event": "login", "within": "90d"}}, ACTIVE),
    (
        "not performed within",
        {"not": {"performed": {"event": "login", "within": "90d"}}},
        _everyone_but(*ACTIVE),
    ),
    # Purchases of 1000 or more in 30 days: u01 1500+2000, u08 1000+1001+5000; u03's "5000"
    # is a string and u05's second purchase was 40 days ago.
    (
        "performed count and where",
        {
            "performed": {
                "event": "fund_purchase",
                "within": "30d",
                "count": {"gte": 2},
                "where": {"amount": {"gte": 1000}},
            }
        },
        {"u01", "u08"},
    ),
    # Purchases in 30 days: u01 3, u03 2, u05 1, u08 4, everyone else 0.
    (
        "performed count eq",
        {"performed": {"event": "fund_purchase", "within": "30d", "count": {"eq": 1}}},
        {"u05"},
    ),
    (
        "performed count lt counts zero",
        {"performed": {"event": "fund_purchase", "within": "30d", "count": {"lt": 2}}},
        _everyone_but("u01", "u03", "u08"),
    ),
    (
        "performed count between",
        {"performed": {"event": "fund_purchase", "within": "30d", "count": {"between": [2, 3]}}},
        {"u01", "u03"},
    ),
    (
        "performed count gt",
        {"performed": {"event": "fund_purchase", "within": "30d", "count": {"gt": 3}}},
        {"u08"},
    ),
    (
        "performed where string",
        {"performed": {"event": "fund_purchase", "where": {"currency": {"eq": "CNY"}}}},
        {"u01"},
    ),
    (
        "performed where in",
        {"performed": {"event": "fund_purchase", "where": {"amount": {"in": [999, 5000]}}}},
        {"u08"},
    ),
    # --- segment references, all / any / not
    ("segment nested", {"segment": "rich-active"}, RICH & ACTIVE),
    ("not segment", {"not": {"segment": "rich-active"}}, _everyone_but(*(RICH & ACTIVE))),
    ("segment any", {"segment": "rich-or-vip"}, RICH | {"u04", "u09"}),
    # The spec's dormant-savers shape: only u10 (rich, churned, last login 91 days ago,
    # score 3) is in.
    (
        "all any not",
        {
            "all": [
                {"segment": "rich"},
                {"attr": "lifecycle", "in": ["dormant", "churned"]},
                {"not": {"segment": "active"}},
                {"any": [{"tag": "payroll"}, {"attr": "score", "lt": 5}]},
            ]
        },
        {"u10"},
    ),
    (
        "any of not",
        {"any": [{"not": {"attr": "aum", "exists": True}}, {"attr": "aum", "lt": 1}]},
        {"u04", "u07", "u11"},
    ),
]


@pytest.mark.parametrize(
    ("condition", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_condition_selects_exactly(
    sessions: SessionFactory, condition: dict[str, Any], expected: set[str]
) -> None:
    await load_population(sessions)
    assert await members(sessions, condition) == expected


async def test_anniversary_follows_the_business_line_time_zone(sessions: SessionFactory) -> None:
    await load_population(sessions)
    # In UTC it is still 27 December for u07's creation, so only u08 has an anniversary.
    condition = {"attr": "created_at", "anniversary": "today"}
    assert await members(sessions, condition, timezone="UTC") == {"u08"}


@pytest.mark.parametrize(
    ("today", "window", "expected"),
    [
        # 2027 has no 29 February: u05 (born 2000-02-29) celebrates on the 28th.
        (date(2027, 2, 28), "today", {"u05"}),
        (date(2027, 2, 27), "1d", {"u05"}),
        # 2028 has one: the 28th is not u05's day, the 29th is; u11 (1 March) follows.
        (date(2028, 2, 28), "today", set()),
        (date(2028, 2, 29), "today", {"u05"}),
        (date(2028, 2, 29), "1d", {"u05", "u11"}),
    ],
)
async def test_anniversary_of_29_february(
    sessions: SessionFactory, today: date, window: str, expected: set[str]
) -> None:
    await load_population(sessions)
    noon_in_shanghai = datetime(today.year, today.month, today.day, 4, tzinfo=UTC)
    condition = {"attr": "birthday", "anniversary": window}
    assert await members(sessions, condition, at=noon_in_shanghai) == expected


async def test_now_is_a_parameter_not_the_clock(sessions: SessionFactory) -> None:
    await load_population(sessions)
    condition = {"performed": {"event": "login", "within": "90d"}}
    # Two days on, u05's login has happened and u03's (89 days before NOW) has aged out;
    # sixty days back, the window reaches the logins 89, 91 and 100 days before NOW.
    later = await members(sessions, condition, at=NOW + timedelta(days=2))
    assert later == {"u01", "u05", "u08", "u12"}
    assert await members(sessions, condition, at=NOW - timedelta(days=60)) == {"u02", "u03", "u10"}


async def test_reference_cycle_is_an_error(sessions: SessionFactory) -> None:
    query = {
        "segment": "aa",
        "segments": {
            "aa": {"match": {"any": [{"tag": "x"}, {"segment": "bb"}]}},
            "bb": {"match": {"not": {"segment": "aa"}}},
        },
        "at": NOW,
    }
    with pytest.raises(SegmentCycleError, match="aa → bb → aa"):
        await SegmentActivities(sessions).count(CountSegmentInput(**query))


async def test_unknown_reference_is_an_error(sessions: SessionFactory) -> None:
    with pytest.raises(UnknownSegmentError, match="'ghosts'"):
        await members(sessions, {"all": [{"tag": "vip"}, {"segment": "ghosts"}]})
    with pytest.raises(UnknownSegmentError, match="'nothing'"):
        await SegmentActivities(sessions).count(
            CountSegmentInput(segment="nothing", segments={}, at=NOW)
        )


@pytest.mark.parametrize(
    "condition",
    [
        {"attr": "birthday", "gt": 5},
        {"attr": "created_at", "lt": "yesterday"},
        {"attr": "lifecycle", "eq": 3},
        {"attr": "tags", "eq": "vip"},
        {"performed": {"event": "login", "count": {"gte": "two"}}},
    ],
)
async def test_condition_that_cannot_fit_its_field_is_an_error(
    sessions: SessionFactory, condition: dict[str, Any]
) -> None:
    with pytest.raises(InvalidConditionError):
        await members(sessions, condition)


async def test_count(sessions: SessionFactory) -> None:
    await load_population(sessions)
    result = await SegmentActivities(sessions).count(
        CountSegmentInput(**{**_query({"segment": "rich-active"}), "segment": "rich-active"})
    )
    assert result.count == 4


async def test_sample_masks_personal_data(sessions: SessionFactory) -> None:
    await load_population(sessions)
    condition = {"any": [{"tag": "payroll"}, {"attr": "locale", "eq": "en"}]}
    result = await SegmentActivities(sessions).sample(
        SampleSegmentInput(**_query(condition), size=20)
    )
    by_id = {member.id: member for member in result.members}
    assert set(by_id) == {"u01", "u02", "u03", "u05", "u08", "u09", "u12"}
    assert (by_id["u01"].name, by_id["u01"].phone, by_id["u01"].email) == (
        "张*",
        "138****5678",
        "z***@example.com",
    )
    assert (by_id["u03"].name, by_id["u03"].phone, by_id["u03"].email) == (
        "A********g",
        "+1*******00",
        "a***@example.org",
    )
    assert (by_id["u05"].name, by_id["u05"].email) == ("B*b", None)
    assert by_id["u09"].name == "周*"
    assert by_id["u01"].tags == ["payroll", "vip"]
    raw = {p[key] for p in PROFILES for key in ("name", "phone", "email") if p.get(key)}
    shown = {getattr(m, key) for m in result.members for key in ("name", "phone", "email")}
    assert not raw & shown

    fewer = await SegmentActivities(sessions).sample(
        SampleSegmentInput(**_query(condition), size=3)
    )
    assert [m.id for m in fewer.members] == [m.id for m in result.members][:3]


async def test_membership_answers_in_request_order(sessions: SessionFactory) -> None:
    await load_population(sessions)
    segments = SegmentActivities(sessions)
    query = _query({"segment": "rich-active"})
    asked = ["u12", "u02", "nobody", "u01", "u01", "u10"]
    result = await segments.check_membership(CheckMembershipInput(**query, user_ids=asked))
    assert result.members == [True, False, False, True, True, False]
    empty = await segments.check_membership(CheckMembershipInput(**query, user_ids=[]))
    assert empty.members == []


async def _snapshot_rows(sessions: SessionFactory, snapshot_id: str) -> tuple[int, set[str]]:
    async with sessions() as session:
        size = await session.exec(
            select(AudienceSnapshot.size).where(AudienceSnapshot.id == snapshot_id)
        )
        users = await session.exec(
            select(AudienceMember.user_id).where(AudienceMember.audience_id == snapshot_id)
        )
        return size.one(), set(users.all())


async def test_snapshot_stores_members_once(sessions: SessionFactory) -> None:
    await load_population(sessions)
    segments = SegmentActivities(sessions)
    query = _query({"segment": "rich-active"})
    first = await segments.snapshot(
        SnapshotSegmentInput(**query, snapshot_id="campaign-1", segment_version="v1")
    )
    assert first.size == 4
    assert await _snapshot_rows(sessions, "campaign-1") == (4, RICH & ACTIVE)

    # A new member joins; the same snapshot id still answers with what it first stored.
    async with sessions() as session, session.begin():
        session.add(Profile(id="u13", tags=["vip"], attrs={"aum": 90000}))
        await session.flush()
        session.add(Event(client_id="late", user_id="u13", name="login", ts=NOW))
    again = await segments.snapshot(SnapshotSegmentInput(**query, snapshot_id="campaign-1"))
    assert again.size == 4
    assert await _snapshot_rows(sessions, "campaign-1") == (4, RICH & ACTIVE)

    fresh = await segments.snapshot(SnapshotSegmentInput(**query, snapshot_id="campaign-2"))
    assert fresh.size == 5
    assert await _snapshot_rows(sessions, "campaign-2") == (5, RICH & ACTIVE | {"u13"})
    async with sessions() as session:
        stored = await session.get(AudienceSnapshot, "campaign-1")
    assert stored is not None
    assert (stored.segment, stored.segment_version, stored.created_at) == ("case", "v1", NOW)


async def test_concurrent_snapshots_with_one_id_store_one_audience(
    sessions: SessionFactory,
) -> None:
    await load_population(sessions)
    segments = SegmentActivities(sessions)
    request = SnapshotSegmentInput(**_query({"tag": "payroll"}), snapshot_id="race")
    results = await asyncio.gather(*(segments.snapshot(request) for _ in range(8)))
    assert {result.size for result in results} == {6}
    assert await _snapshot_rows(sessions, "race") == (6, {"u01", "u02", "u05", "u08", "u09", "u12"})
