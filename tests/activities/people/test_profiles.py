"""Profiles on a real PostgreSQL: upserts, consents, events, the `update` step and context."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import col, select

from cjo.activities.people.lifecycle import (
    InvalidProfileUpdateError,
    LifecycleRules,
    RefreshLifecycleInput,
)
from cjo.activities.people.profiles import (
    ConsentChange,
    EventInput,
    IngestEventsInput,
    ProfileActivities,
    ProfileContextInput,
    ProfileInput,
    SetConsentsInput,
    SetConsentsResult,
    UpsertProfilesInput,
)
from cjo.steps.contracts import ProfileUpdate, UpdateProfilesInput
from cjo.store.db import SessionFactory
from cjo.store.schema import ActivityReceipt, Consent, Event, Profile

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def profile(sessions: SessionFactory, user_id: str) -> Profile:
    async with sessions() as session:
        found = await session.get(Profile, user_id)
    assert found is not None, user_id
    return found


async def count(sessions: SessionFactory, table: Any) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(table))).one()


async def upsert(sessions: SessionFactory, at: datetime, *profiles: dict[str, Any]) -> Any:
    return await ProfileActivities(sessions).upsert_profiles(
        UpsertProfilesInput(profiles=[ProfileInput.model_validate(p) for p in profiles], at=at)
    )


async def update(sessions: SessionFactory, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    result = await ProfileActivities(sessions).update(
        UpdateProfilesInput(requests=[ProfileUpdate.model_validate(r) for r in requests])
    )
    return [outcome.model_dump() for outcome in result.results]


async def set_consents(
    sessions: SessionFactory, *changes: tuple[str, dict[str, bool], str, datetime]
) -> SetConsentsResult:
    requests = [
        ConsentChange.model_validate(
            {"user_id": user_id, "consents": consents, "source": source, "at": at}
        )
        for user_id, consents, source, at in changes
    ]
    return await ProfileActivities(sessions).set_consents(SetConsentsInput(requests=requests))


async def test_upsert_inserts_then_merges_attrs_and_removes_null_keys(
    sessions: SessionFactory,
) -> None:
    first = await upsert(
        sessions,
        T0,
        {
            "id": "u1",
            "name": "王小明",
            "phone": "13800000001",
            "timezone": "Asia/Shanghai",
            "birthday": "1990-05-04",
            "created_at": "2024-01-02T03:04:05+08:00",
            "tags": ["payroll", "vip"],
            "attrs": {"aum": 50000, "tier": "gold", "risk_score": 12},
            "addresses": {"push": "token-1"},
        },
        {"id": "u2", "email": "u2@example.com"},
    )
    assert (first.created, first.updated) == (2, 0)
    u1 = await profile(sessions, "u1")
    assert (u1.locale, u1.lifecycle, u1.birthday) == ("zh-CN", "new", date(1990, 5, 4))
    assert u1.created_at == datetime(2024, 1, 1, 19, 4, 5, tzinfo=UTC)
    assert (await profile(sessions, "u2")).created_at == T0  # not given: the upsert's moment

    later = T0 + timedelta(hours=1)
    second = await upsert(
        sessions,
        later,
        {
            "id": "u1",
            "phone": None,
            "locale": "en",
            "tags": ["premium"],
            "attrs": {"aum": 60000, "risk_score": None, "segment": "retail"},
            "addresses": {"wechat": "wx-1"},
        },
        {"id": "u3"},
    )
    assert (second.created, second.updated) == (1, 1)
    u1 = await profile(sessions, "u1")
    assert u1.attrs == {"aum": 60000, "tier": "gold", "segment": "retail"}
    assert u1.addresses == {"push": "token-1", "wechat": "wx-1"}
    assert u1.tags == ["premium"]
    # Left out: kept. Given as null: cleared.
    assert (u1.name, u1.phone, u1.timezone) == ("王小明", None, "Asia/Shanghai")
    assert u1.locale == "en"
    assert u1.created_at == datetime(2024, 1, 1, 19, 4, 5, tzinfo=UTC)
    assert u1.updated_at == later

    await upsert(sessions, later, {"id": "u1", "attrs": {"tier": None}})
    u1 = await profile(sessions, "u1")
    assert u1.attrs == {"aum": 60000, "segment": "retail"}
    assert u1.tags == ["premium"]  # tags not given: kept


async def test_upsert_folds_repeated_ids_within_one_batch(sessions: SessionFactory) -> None:
    result = await upsert(
        sessions,
        T0,
        {"id": "u1", "name": "first", "attrs": {"a": 1, "b": 2}, "tags": ["x"]},
        {"id": "u1", "attrs": {"b": None, "c": 3}},
        {"id": "u1", "name": "last"},
    )
    assert (result.created, result.updated) == (1, 0)
    u1 = await profile(sessions, "u1")
    assert (u1.name, u1.attrs, u1.tags) == ("last", {"a": 1, "c": 3}, ["x"])


async def test_upsert_writes_pages_larger_than_one_batch(sessions: SessionFactory) -> None:
    people = [{"id": f"u{n:05d}", "attrs": {"n": n}} for n in range(2500)]
    result = await upsert(sessions, T0, *people)
    assert (result.created, result.updated) == (2500, 0)
    again = await upsert(sessions, T0, *people[:1200])
    assert (again.created, again.updated) == (0, 1200)
    assert (await profile(sessions, "u02499")).attrs == {"n": 2499}
    assert await count(sessions, Profile) == 2500


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "not an IANA time zone"),
        ("lifecycle", "zombie", "'new', 'growing', 'mature', 'dormant' or 'churned'"),
        ("email", "not-an-email", "should match pattern"),
        ("locale", "zh_CN", "should match pattern"),
        ("addresses", {"sms": "13800000000"}, "'push', 'wechat' or 'webhook'"),
        ("colour", "blue", "Extra inputs are not permitted"),
    ],
)
def test_bad_profile_input_is_refused_with_a_clear_message(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        ProfileInput.model_validate({"id": "u1", field: value})
    assert message in str(raised.value)
    assert field in str(raised.value)


async def test_consents_record_source_and_time_and_the_latest_change_wins(
    sessions: SessionFactory,
) -> None:
    await upsert(sessions, T0, {"id": "u1"}, {"id": "u2"})
    first = await set_consents(
        sessions,
        ("u1", {"sms": True, "email": False}, "app-signup", T0),
        # Same page, later moment: it wins on sms.
        ("u1", {"sms": False}, "sms-reply", T0 + timedelta(days=1)),
        ("ghost", {"sms": True}, "crm", T0),
    )
    assert [r.model_dump() for r in first.results] == [
        {"user_id": "u1", "found": True, "applied": ["email"], "superseded": ["sms"]},
        {"user_id": "u1", "found": True, "applied": ["sms"], "superseded": []},
        {"user_id": "ghost", "found": False, "applied": [], "superseded": []},
    ]

    # A change made before the stored one arrives late: it is ignored.
    late = await set_consents(
        sessions, ("u1", {"sms": True, "push": True}, "branch", T0 + timedelta(hours=1))
    )
    assert late.results[0].applied == ["push"]
    assert late.results[0].superseded == ["sms"]

    async with sessions() as session:
        rows = (await session.exec(select(Consent).order_by(col(Consent.channel)))).all()
    assert [(r.user_id, r.channel, r.granted, r.source, r.updated_at) for r in rows] == [
        ("u1", "email", False, "app-signup", T0),
        ("u1", "push", True, "branch", T0 + timedelta(hours=1)),
        ("u1", "sms", False, "sms-reply", T0 + timedelta(days=1)),
    ]


def events(*ids: str, name: str = "login") -> IngestEventsInput:
    return IngestEventsInput(
        events=[
            EventInput(id=i, user_id="u1", name=name, props={"n": n}, ts=T0 + timedelta(minutes=n))
            for n, i in enumerate(ids)
        ]
    )


async def test_events_are_stored_once_per_client_id(sessions: SessionFactory) -> None:
    activities = ProfileActivities(sessions)
    first = await activities.ingest_events(events("e1", "e2", "e1", "e3", "e1"))
    assert (first.accepted, first.duplicates) == (3, 2)
    assert first.accepted_ids == ["e1", "e2", "e3"]
    assert first.duplicate_ids == ["e1", "e1"]

    second = await activities.ingest_events(events("e2", "e4", "e4", "e5", "e3"))
    assert (second.accepted, second.duplicates) == (2, 3)
    assert second.accepted_ids == ["e4", "e5"]
    assert second.duplicate_ids == ["e2", "e4", "e3"]

    async with sessions() as session:
        stored = (await session.exec(select(Event).order_by(col(Event.client_id)))).all()
    assert [e.client_id for e in stored] == ["e1", "e2", "e3", "e4", "e5"]
    # The first occurrence is the one kept.
    assert stored[0].props == {"n": 0} and stored[3].props == {"n": 1}


async def test_events_beyond_one_batch_count_exactly(sessions: SessionFactory) -> None:
    activities = ProfileActivities(sessions)
    await activities.ingest_events(events(*(f"e{n}" for n in range(0, 3000, 3))))  # 1000 ids
    ids = [f"e{n}" for n in range(2500)] + [f"e{n}" for n in range(2400, 2500)]
    result = await activities.ingest_events(events(*ids))
    # 834 of 0..2499 were stored before (multiples of 3); 100 ids repeat inside the page.
    assert (result.accepted, result.duplicates) == (2500 - 834, 834 + 100)
    assert await count(sessions, Event) == 1000 + 2500 - 834


def test_event_names_and_ids_are_checked() -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        EventInput(id="e1", user_id="u1", name="bad name", ts=T0)
    with pytest.raises(ValidationError, match="at least 1 character"):
        EventInput(id="", user_id="u1", name="login", ts=T0)


async def test_update_runs_once_per_key(sessions: SessionFactory) -> None:
    await upsert(sessions, T0, {"id": "u1", "tags": ["a"], "attrs": {"visits": 1}})
    request = {
        "key": "journey/retail/welcome/u1/tag_vip/1",
        "user_id": "u1",
        "at": T0 + timedelta(hours=1),
        "set": {"stage": "onboarded", "visits": 2},
        "tags_add": ["vip"],
    }
    first = await update(sessions, request, request)  # the key twice in one page, too
    assert first == [{"key": request["key"], "outcome": "done", "applied": True}] * 2

    # Something else changes the profile afterwards; a retry must not undo it.
    await upsert(sessions, T0 + timedelta(hours=2), {"id": "u1", "attrs": {"stage": "later"}})
    again = await update(sessions, request | {"at": T0 + timedelta(hours=3)})
    assert again == first[:1]
    u1 = await profile(sessions, "u1")
    assert u1.attrs == {"stage": "later", "visits": 2}
    assert u1.tags == ["a", "vip"]
    assert u1.updated_at == T0 + timedelta(hours=2)
    async with sessions() as session:
        receipts = (await session.exec(select(ActivityReceipt))).all()
    assert [(r.key, r.activity, r.result) for r in receipts] == [
        (request["key"], "profiles.update", {"outcome": "done", "applied": True})
    ]


async def test_concurrent_updates_with_one_key_apply_once(sessions: SessionFactory) -> None:
    await upsert(sessions, T0, {"id": "u1"})
    answers = await asyncio.gather(
        *(
            update(
                sessions,
                {"key": "k", "user_id": "u1", "at": T0, "set": {"by": n}, "tags_add": [f"t{n}"]},
            )
            for n in range(15)
        )
    )
    assert all(answer == answers[0] for answer in answers)
    u1 = await profile(sessions, "u1")
    assert len(u1.tags) == 1
    assert u1.tags == [f"t{u1.attrs['by']}"]
    assert await count(sessions, ActivityReceipt) == 1


async def test_concurrent_upserts_of_one_profile_lose_no_attribute(
    sessions: SessionFactory,
) -> None:
    await asyncio.gather(
        *(upsert(sessions, T0, {"id": "u1", "attrs": {f"k{n}": n}}) for n in range(20))
    )
    assert (await profile(sessions, "u1")).attrs == {f"k{n}": n for n in range(20)}


async def test_update_adds_and_removes_tags_without_duplicates(sessions: SessionFactory) -> None:
    await upsert(sessions, T0, {"id": "u1", "tags": ["a", "b"]}, {"id": "u2"})
    await update(
        sessions,
        {
            "key": "w/9",
            "user_id": "u1",
            "at": T0,
            "tags_add": ["b", "c", "c"],
            "tags_remove": ["a"],
        },
        {"key": "w/2", "user_id": "u2", "at": T0, "tags_add": ["z"], "tags_remove": ["y"]},
        # A second change for u1 in the same page applies after the first: removal wins.
        {"key": "w/10", "user_id": "u1", "at": T0, "tags_add": ["d", "a"], "tags_remove": ["d"]},
    )
    assert (await profile(sessions, "u1")).tags == ["b", "c", "a"]
    assert (await profile(sessions, "u2")).tags == ["z"]


async def test_update_writes_builtin_fields_to_columns_and_others_to_attrs(
    sessions: SessionFactory,
) -> None:
    await upsert(sessions, T0, {"id": "u1", "timezone": "Asia/Shanghai", "attrs": {"old": 1}})
    results = await update(
        sessions,
        {
            "key": "k1",
            "user_id": "u1",
            "at": T0,
            "set": {
                "locale": "en",
                "timezone": None,
                "lifecycle": "mature",
                "old": None,
                "x": [1],
                "seen": T0,
            },
        },
        {"key": "k2", "user_id": "nobody", "at": T0, "set": {"x": 1}},
    )
    assert [r["applied"] for r in results] == [True, False]
    u1 = await profile(sessions, "u1")
    assert (u1.locale, u1.timezone, u1.lifecycle) == ("en", None, "mature")
    assert u1.attrs == {"x": [1], "seen": "2026-03-01T09:00:00Z"}
    assert await count(sessions, ActivityReceipt) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone: Value error, 'Mars/Olympus' is not an IANA"),
        ({"lifecycle": "zombie"}, "lifecycle: Input should be 'new'"),
        ({"locale": None}, "locale: Input should be a valid string"),
        ({"phone": "13800000000", "email": "x@y.z"}, "email, phone cannot be set by a journey"),
        ({"thing": object()}, "update bad: not JSON"),
    ],
)
async def test_bad_update_values_fail_the_page_before_any_write(
    sessions: SessionFactory, changes: dict[str, Any], message: str
) -> None:
    await upsert(sessions, T0, {"id": "u1"})
    good = {"key": "good", "user_id": "u1", "at": T0, "tags_add": ["t"]}
    with pytest.raises(InvalidProfileUpdateError) as raised:
        await update(sessions, good, {"key": "bad", "user_id": "u1", "at": T0, "set": changes})
    assert message in raised.value.message
    assert raised.value.non_retryable
    assert await count(sessions, ActivityReceipt) == 0
    assert (await profile(sessions, "u1")).tags == []


async def test_profile_context_is_the_user_root_with_consents(sessions: SessionFactory) -> None:
    await upsert(
        sessions,
        T0,
        {
            "id": "u1",
            "name": "Li",
            "birthday": "1988-02-29",
            "tags": ["vip"],
            "attrs": {"aum": 1},
            "addresses": {"push": "tok"},
        },
        {"id": "u2"},
    )
    await set_consents(sessions, ("u1", {"sms": True, "email": False}, "s", T0))
    result = await ProfileActivities(sessions).profile_context(
        ProfileContextInput(user_ids=["u2", "ghost", "u1"])
    )
    u2, ghost, u1 = result.profiles
    assert ghost is None
    assert u2 is not None and u2.consents == {} and u2.id == "u2"
    assert u1 is not None
    assert u1.as_context() == {
        "id": "u1",
        "name": "Li",
        "phone": None,
        "email": None,
        "locale": "zh-CN",
        "timezone": None,
        "birthday": date(1988, 2, 29),
        "created_at": T0,
        "lifecycle": "new",
        "tags": ["vip"],
        "attrs": {"aum": 1},
        "addresses": {"push": "tok"},
        "consents": {"sms": True, "email": False},
    }
    # It survives Temporal's JSON payloads with its types intact.
    assert type(result).model_validate_json(result.model_dump_json()) == result


AT = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return AT - timedelta(days=days)


# user: (created days ago, days ago of each event, stored stage, expected stage)
POPULATION: dict[str, tuple[float, list[float], str, str]] = {
    "fresh": (10, [], "churned", "new"),
    "fresh_busy": (29, [1] * 30, "new", "new"),
    "churned": (400, [200, 250], "mature", "churned"),
    "churned_never_seen": (200, [], "new", "churned"),
    "churned_exactly": (400, [180], "growing", "churned"),
    "dormant": (400, [100], "growing", "dormant"),
    "dormant_never_seen": (120, [], "new", "dormant"),
    "dormant_exactly": (400, [90], "growing", "dormant"),
    "mature": (400, [1] * 10, "growing", "mature"),
    "mature_stays": (1000, [5] * 12 + [300], "mature", "mature"),
    "growing_young": (200, [1] * 20, "new", "growing"),
    "growing_few_events": (400, [1] * 9 + [100] * 5, "mature", "growing"),
    "growing_just_active": (400, [89], "dormant", "growing"),
    # Events after the refresh moment do not count: seen last 100 days before it.
    "dormant_future_event": (400, [100, -5, -6], "growing", "dormant"),
}


async def test_lifecycle_stages_of_a_hand_built_population(sessions: SessionFactory) -> None:
    await upsert(
        sessions,
        AT,
        *(
            {"id": user, "created_at": days_ago(created), "lifecycle": stored}
            for user, (created, _, stored, _) in POPULATION.items()
        ),
    )
    activities = ProfileActivities(sessions)
    page = [
        EventInput(id=f"{user}-{n}", user_id=user, name="login", ts=days_ago(ago))
        for user, (_, seen, _, _) in POPULATION.items()
        for n, ago in enumerate(seen)
    ]
    # Events of someone with no profile are harmless.
    page.append(EventInput(id="stranger-1", user_id="stranger", name="login", ts=days_ago(1)))
    await activities.ingest_events(IngestEventsInput(events=page))

    result = await activities.refresh_lifecycle(RefreshLifecycleInput(at=AT))

    async with sessions() as session:
        stages = dict((await session.exec(select(Profile.id, Profile.lifecycle))).all())
    assert stages == {user: expected for user, (*_, expected) in POPULATION.items()}
    assert result.users == {"new": 2, "growing": 3, "mature": 2, "dormant": 4, "churned": 3}
    assert result.changed == {"new": 1, "growing": 3, "mature": 1, "dormant": 4, "churned": 3}
    assert (await profile(sessions, "dormant")).updated_at == AT

    again = await activities.refresh_lifecycle(RefreshLifecycleInput(at=AT))
    assert again.users == result.users
    assert sum(again.changed.values()) == 0

    # A year later, with no new events, everyone has gone quiet.
    later = await activities.refresh_lifecycle(RefreshLifecycleInput(at=AT + timedelta(days=365)))
    assert later.users == {"new": 0, "growing": 0, "mature": 0, "dormant": 0, "churned": 14}


async def test_lifecycle_rules_can_be_tuned(sessions: SessionFactory) -> None:
    await upsert(sessions, AT, {"id": "u1", "created_at": days_ago(400)})
    await ProfileActivities(sessions).ingest_events(
        IngestEventsInput(
            events=[
                EventInput(id=f"e{n}", user_id="u1", name="login", ts=days_ago(2)) for n in range(3)
            ]
        )
    )
    strict = await ProfileActivities(sessions).refresh_lifecycle(RefreshLifecycleInput(at=AT))
    assert strict.users["growing"] == 1
    lenient = await ProfileActivities(sessions).refresh_lifecycle(
        RefreshLifecycleInput(at=AT, rules=LifecycleRules(mature_events=3))
    )
    assert lenient.users["mature"] == 1 and lenient.changed["mature"] == 1
    with pytest.raises(ValidationError, match="dormant_days must be fewer than churned_days"):
        LifecycleRules(dormant_days=200, churned_days=180)
