"""Benefits against the real database: limits hold under concurrency, every change is idempotent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter

from cjo.activities.benefits.grants import BenefitActivities
from cjo.activities.benefits.models import (
    ExpireGrantsInput,
    GrantChangeOutcome,
    GrantChangeRequest,
    RedeemGrantInput,
    RevokeGrantInput,
)
from cjo.dsl import BenefitSpec
from cjo.steps.contracts import GrantBenefitInput, GrantOutcome, GrantRequest
from cjo.store.db import SessionFactory

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LINE = "credit-card"


def spec(**fields: Any) -> BenefitSpec:
    document: dict[str, Any] = {"type": "coupon", "value": 20, "unit": "CNY", "validity": "30d"}
    return BenefitSpec.model_validate(document | fields)


def request(
    key: str,
    benefit_spec: BenefitSpec,
    *,
    user: str | None = None,
    at: datetime = T0,
    quantity: int = 1,
    benefit: str = "cashback",
) -> GrantRequest:
    return GrantRequest(
        key=key,
        business_line=LINE,
        benefit=benefit,
        benefit_version="v1",
        spec=benefit_spec,
        user_id=user or f"user-{key}",
        quantity=quantity,
        at=at,
        workflow_id=f"journey/{LINE}/j/{user or key}",
        step_id="give",
    )


async def grant_one(benefits: BenefitActivities, one: GrantRequest) -> GrantOutcome:
    (outcome,) = (await benefits.grant(GrantBenefitInput(requests=[one]))).results
    return outcome


async def change_one(
    benefits: BenefitActivities,
    verb: Literal["redeem", "revoke"],
    key: str,
    grant_id: str,
    at: datetime = T0,
) -> GrantChangeOutcome:
    changes = [GrantChangeRequest(key=key, grant_id=grant_id, at=at)]
    if verb == "redeem":
        return (await benefits.redeem(RedeemGrantInput(requests=changes))).results[0]
    return (await benefits.revoke(RevokeGrantInput(requests=changes))).results[0]


async def snapshot(sessions: SessionFactory) -> dict[str, Any]:
    """Everything a repeated request must leave untouched."""
    async with sessions() as session:
        connection = await session.connection()
        ledgers = (
            await connection.execute(
                text(
                    "SELECT business_line, benefit, units_granted, value_granted "
                    "FROM benefit_ledgers ORDER BY 1, 2"
                )
            )
        ).all()
        grants = (
            await connection.execute(
                text(
                    "SELECT id, status, redeemed_at, revoked_at, redeem_key, revoke_key "
                    "FROM grants ORDER BY id"
                )
            )
        ).all()
        receipts = (
            await connection.execute(text("SELECT key, result FROM activity_receipts ORDER BY 1"))
        ).all()
    return {"ledgers": ledgers, "grants": grants, "receipts": receipts}


async def ledger(sessions: SessionFactory, benefit: str = "cashback") -> tuple[int, float]:
    async with sessions() as session:
        connection = await session.connection()
        row = (
            await connection.execute(
                text(
                    "SELECT units_granted, value_granted FROM benefit_ledgers "
                    "WHERE business_line = :line AND benefit = :benefit"
                ),
                {"line": LINE, "benefit": benefit},
            )
        ).one()
    return int(row[0]), float(row[1])


async def grant_rows(sessions: SessionFactory) -> int:
    async with sessions() as session:
        connection = await session.connection()
        return int((await connection.execute(text("SELECT count(*) FROM grants"))).scalar_one())


# --- stock, budget and per-user limits under concurrency -------------------------------------


async def test_a_thousand_concurrent_grants_against_stock_100_grant_exactly_100(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    limited_stock = spec(stock=100)
    outcomes = await asyncio.gather(
        *(grant_one(benefits, request(f"k{i}", limited_stock)) for i in range(1000))
    )
    granted = [o for o in outcomes if o.outcome == "granted"]
    assert len(granted) == 100
    assert [o.reason for o in outcomes if o.outcome != "granted"] == ["stock"] * 900
    assert await ledger(sessions) == (100, 2000.0)
    assert await grant_rows(sessions) == 100
    assert len({o.code for o in granted}) == 100
    assert (await benefits.status(LINE, "cashback", limited_stock)).units_remaining == 0


async def test_one_set_based_call_of_a_thousand_grants_the_first_100_in_order(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    limited_stock = spec(stock=100)
    batch = GrantBenefitInput(requests=[request(f"k{i}", limited_stock) for i in range(1000)])
    outcomes = (await benefits.grant(batch)).results
    assert [o.key for o in outcomes] == [f"k{i}" for i in range(1000)]
    assert [o.outcome for o in outcomes] == ["granted"] * 100 + ["exhausted"] * 900
    assert await ledger(sessions) == (100, 2000.0)
    assert await grant_rows(sessions) == 100


async def test_concurrent_batches_and_single_calls_together_stop_at_stock(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    limited_stock = spec(stock=100)
    batches = [
        benefits.grant(
            GrantBenefitInput(requests=[request(f"b{b}-{i}", limited_stock) for i in range(250)])
        )
        for b in range(4)
    ]
    singles = [grant_one(benefits, request(f"s{i}", limited_stock)) for i in range(200)]
    answers = await asyncio.gather(*batches, *singles)
    outcomes = [o for answer in answers[:4] for o in answer.results] + answers[4:]
    assert sum(o.outcome == "granted" for o in outcomes) == 100
    assert sum(o.outcome == "exhausted" for o in outcomes) == 1100
    assert await ledger(sessions) == (100, 2000.0)


async def test_budget_counts_value_value_30_budget_100_gives_exactly_3(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    budgeted = spec(value=30, budget=100)
    outcomes = await asyncio.gather(
        *(grant_one(benefits, request(f"k{i}", budgeted)) for i in range(50))
    )
    assert sum(o.outcome == "granted" for o in outcomes) == 3
    assert {o.reason for o in outcomes if o.outcome == "exhausted"} == {"budget"}
    assert await ledger(sessions) == (3, 90.0)
    status = await benefits.status(LINE, "cashback", budgeted)
    assert status.value_remaining == 10.0
    assert status.units_remaining is None


async def test_budget_takes_quantity_times_value_and_a_smaller_grant_still_fits(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    budgeted = spec(value=30, budget=100)
    first = await grant_one(benefits, request("a", budgeted, quantity=2))
    too_big = await grant_one(benefits, request("b", budgeted, quantity=2))
    fits = await grant_one(benefits, request("c", budgeted, quantity=1))
    assert (first.outcome, first.value) == ("granted", 60.0)
    assert (too_big.outcome, too_big.reason) == ("exhausted", "budget")
    assert (fits.outcome, fits.value) == ("granted", 30.0)
    assert await ledger(sessions) == (3, 90.0)


async def test_stock_counts_units_not_grants(sessions: SessionFactory) -> None:
    benefits = BenefitActivities(sessions)
    limited_stock = spec(stock=5)
    outcomes = [
        await grant_one(benefits, request(f"k{i}", limited_stock, quantity=2)) for i in range(4)
    ]
    assert [o.outcome for o in outcomes] == ["granted", "granted", "exhausted", "exhausted"]
    one = await grant_one(benefits, request("one", limited_stock))
    assert (one.outcome, one.quantity, one.value, one.unit) == ("granted", 1, 20.0, "CNY")
    assert one.expires_at == T0 + timedelta(days=30)
    assert await ledger(sessions) == (5, 100.0)


async def test_one_batch_over_several_benefits_and_specs_keeps_each_limit(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    four, version_two = spec(stock=4), spec(stock=5)
    points = spec(type="points", value=100, unit="points", stock=2)
    batch = [
        request("a", four, quantity=3),
        request("p1", points, benefit="points"),
        request("b", four, quantity=3),
        request("p2", points, benefit="points"),
        request("c", four, quantity=1),
        request("p3", points, benefit="points"),
        # A newer version with more stock, published while the page was in flight.
        request("d", version_two, quantity=1),
        request("e", four, quantity=1),
    ]
    outcomes = (await benefits.grant(GrantBenefitInput(requests=batch))).results
    assert [(o.key, o.outcome) for o in outcomes] == [
        ("a", "granted"),
        ("p1", "granted"),
        ("b", "exhausted"),
        ("p2", "granted"),
        ("c", "granted"),
        ("p3", "exhausted"),
        ("d", "granted"),
        ("e", "exhausted"),
    ]
    assert await ledger(sessions) == (5, 100.0)
    assert await ledger(sessions, "points") == (2, 200.0)


async def test_fifty_concurrent_grants_for_one_user_with_per_user_max_1_grant_once(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    once = spec(perUser={"max": 1})
    outcomes = await asyncio.gather(
        *(grant_one(benefits, request(f"k{i}", once, user="alice")) for i in range(50))
    )
    assert sum(o.outcome == "granted" for o in outcomes) == 1
    assert [o.reason for o in outcomes if o.outcome != "granted"] == ["per_user"] * 49
    assert await ledger(sessions) == (1, 20.0)
    assert await grant_rows(sessions) == 1


async def test_per_user_limit_holds_inside_one_batch_and_other_users_are_not_affected(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    twice = spec(perUser={"max": 2})
    batch = [request(f"a{i}", twice, user="alice") for i in range(4)]
    batch.append(request("b0", twice, user="bob"))
    outcomes = (await benefits.grant(GrantBenefitInput(requests=batch))).results
    assert [o.outcome for o in outcomes] == ["granted", "granted", "limited", "limited", "granted"]


async def test_per_user_within_counts_only_grants_inside_the_window(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    weekly = spec(perUser={"max": 1, "within": "7d"})
    first = await grant_one(benefits, request("w1", weekly, user="alice", at=T0))
    inside = await grant_one(
        benefits, request("w2", weekly, user="alice", at=T0 + timedelta(days=6))
    )
    boundary = await grant_one(
        benefits, request("w3", weekly, user="alice", at=T0 + timedelta(days=7))
    )
    later = await grant_one(
        benefits, request("w4", weekly, user="alice", at=T0 + timedelta(days=8))
    )
    assert first.outcome == "granted"
    assert (inside.outcome, inside.reason) == ("limited", "per_user")
    # The window is (at - within, at]: a grant exactly `within` old has left it.
    assert boundary.outcome == "granted"
    assert later.outcome == "limited"


async def test_a_revoked_grant_no_longer_counts_against_the_user(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    once = spec(perUser={"max": 1})
    first = await grant_one(benefits, request("g1", once, user="alice"))
    assert first.grant_id is not None
    assert (await change_one(benefits, "revoke", "r1", first.grant_id)).outcome == "revoked"
    again = await grant_one(benefits, request("g2", once, user="alice"))
    assert again.outcome == "granted"


async def test_redeemed_and_expired_grants_still_count_against_the_user(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    twice = spec(perUser={"max": 2}, validity="1d")
    used = await grant_one(benefits, request("g1", twice, user="alice"))
    lapsed = await grant_one(benefits, request("g2", twice, user="alice"))
    assert used.grant_id is not None and lapsed.grant_id is not None
    assert (await change_one(benefits, "redeem", "redeem", used.grant_id)).outcome == "redeemed"
    assert (await benefits.expire_due(ExpireGrantsInput(at=T0 + timedelta(days=2)))).expired == 1
    late = await grant_one(benefits, request("g3", twice, user="alice", at=T0 + timedelta(days=3)))
    assert late.outcome == "limited"


# --- idempotency -------------------------------------------------------------------------------


async def test_repeating_a_grant_key_returns_the_first_result_and_changes_nothing(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    single = spec(stock=1, perUser={"max": 1})
    granted = await grant_one(benefits, request("g", single, user="alice"))
    exhausted = await grant_one(benefits, request("x", single, user="bob"))
    limited = await grant_one(benefits, request("l", single, user="alice"))
    assert [granted.outcome, exhausted.outcome, limited.outcome] == [
        "granted",
        "exhausted",
        "limited",
    ]
    # Even once the stock and alice's allowance are handed back, each key keeps its answer.
    assert granted.grant_id is not None
    await change_one(benefits, "revoke", "revoke-g", granted.grant_id)
    before = await snapshot(sessions)
    assert len(before["grants"]) == 1 and len(before["receipts"]) == 2
    repeated = (
        await benefits.grant(
            GrantBenefitInput(
                requests=[
                    request("g", single, user="alice"),
                    request("x", single, user="bob"),
                    request("l", single, user="alice"),
                ]
            )
        )
    ).results
    assert repeated == [granted, exhausted, limited]
    assert await snapshot(sessions) == before


async def test_a_key_repeated_inside_one_batch_or_concurrently_grants_once(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    plenty = spec(stock=10)
    batch = GrantBenefitInput(requests=[request("same", plenty, user="alice")] * 3)
    in_batch = (await benefits.grant(batch)).results
    assert in_batch[0].outcome == "granted"
    assert in_batch == [in_batch[0]] * 3
    concurrent = await asyncio.gather(
        *(grant_one(benefits, request("other", plenty, user="bob")) for _ in range(20))
    )
    assert concurrent == [concurrent[0]] * 20
    assert await grant_rows(sessions) == 2
    assert await ledger(sessions) == (2, 40.0)


async def test_repeating_redeem_and_revoke_keys_returns_the_same_answer_once(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    plenty = spec(stock=10)
    to_redeem = await grant_one(benefits, request("g1", plenty))
    to_revoke = await grant_one(benefits, request("g2", plenty))
    assert to_redeem.grant_id is not None and to_revoke.grant_id is not None
    redeemed = await change_one(benefits, "redeem", "redeem-1", to_redeem.grant_id)
    revoked = await change_one(benefits, "revoke", "revoke-1", to_revoke.grant_id)
    assert (redeemed.outcome, revoked.outcome) == ("redeemed", "revoked")
    before = await snapshot(sessions)
    later = T0 + timedelta(hours=1)
    assert await change_one(benefits, "redeem", "redeem-1", to_redeem.grant_id, later) == redeemed
    assert await change_one(benefits, "revoke", "revoke-1", to_revoke.grant_id, later) == revoked
    assert await snapshot(sessions) == before
    assert await ledger(sessions) == (1, 20.0)


async def test_concurrent_revokes_of_one_grant_return_its_stock_once(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    granted = await grant_one(benefits, request("g", spec(stock=10), quantity=3))
    assert granted.grant_id is not None
    grant_id = granted.grant_id
    outcomes = await asyncio.gather(
        *(change_one(benefits, "revoke", f"r{i}", grant_id) for i in range(20))
    )
    assert sorted(o.outcome for o in outcomes) == ["already_revoked"] * 19 + ["revoked"]
    assert await ledger(sessions) == (0, 0.0)


# --- redeem, revoke, expire --------------------------------------------------------------------


async def test_redeem_flow(sessions: SessionFactory) -> None:
    benefits = BenefitActivities(sessions)
    granted = await grant_one(benefits, request("g", spec(stock=10)))
    assert granted.grant_id is not None
    grant_id = granted.grant_id
    assert (await change_one(benefits, "redeem", "redeem-1", grant_id)).outcome == "redeemed"
    assert (
        await change_one(benefits, "redeem", "redeem-2", grant_id)
    ).outcome == "already_redeemed"
    assert (
        await change_one(benefits, "revoke", "revoke-1", grant_id)
    ).outcome == "already_redeemed"
    # A redeemed grant was used: its stock stays taken.
    assert await ledger(sessions) == (1, 20.0)
    status = await benefits.status(LINE, "cashback")
    assert status.grants == {"granted": 0, "redeemed": 1, "expired": 0, "revoked": 0}


async def test_revoke_returns_stock_so_a_later_grant_succeeds(sessions: SessionFactory) -> None:
    benefits = BenefitActivities(sessions)
    single = spec(stock=1, budget=20)
    first = await grant_one(benefits, request("g1", single))
    assert (await grant_one(benefits, request("g2", single))).outcome == "exhausted"
    assert first.grant_id is not None
    assert (await change_one(benefits, "revoke", "revoke-1", first.grant_id)).outcome == "revoked"
    assert await ledger(sessions) == (0, 0.0)
    assert (await grant_one(benefits, request("g3", single))).outcome == "granted"
    assert (
        await change_one(benefits, "revoke", "revoke-2", first.grant_id)
    ).outcome == "already_revoked"
    assert (
        await change_one(benefits, "redeem", "redeem-1", first.grant_id)
    ).outcome == "already_revoked"
    assert await ledger(sessions) == (1, 20.0)


async def test_redeem_after_expiry_expires_the_grant_and_keeps_its_stock_taken(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    weekly = spec(stock=10, validity="7d")
    granted = await grant_one(benefits, request("g", weekly))
    assert granted.grant_id is not None and granted.expires_at == T0 + timedelta(days=7)
    on_the_last_moment = await grant_one(benefits, request("h", weekly))
    assert on_the_last_moment.grant_id is not None
    last_moment = T0 + timedelta(days=7)
    late = T0 + timedelta(days=7, seconds=1)
    assert (
        await change_one(benefits, "redeem", "redeem-h", on_the_last_moment.grant_id, last_moment)
    ).outcome == "redeemed"
    assert (
        await change_one(benefits, "redeem", "redeem-g", granted.grant_id, late)
    ).outcome == "expired"
    assert (
        await change_one(benefits, "redeem", "redeem-g", granted.grant_id, late)
    ).outcome == "expired"
    assert (
        await change_one(benefits, "revoke", "revoke-g", granted.grant_id, late)
    ).outcome == "expired"
    assert await ledger(sessions) == (2, 40.0)
    status = await benefits.status(LINE, "cashback", weekly)
    assert status.grants == {"granted": 0, "redeemed": 1, "expired": 1, "revoked": 0}
    assert status.units_remaining == 8


async def test_revoking_a_grant_past_its_time_expires_it_without_returning_stock(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    granted = await grant_one(benefits, request("g", spec(stock=10, validity="1d")))
    assert granted.grant_id is not None
    late = T0 + timedelta(days=2)
    assert (
        await change_one(benefits, "revoke", "revoke", granted.grant_id, late)
    ).outcome == "expired"
    assert await ledger(sessions) == (1, 20.0)


async def test_unknown_grants_are_not_found(sessions: SessionFactory) -> None:
    benefits = BenefitActivities(sessions)
    assert (await change_one(benefits, "redeem", "redeem", "no-such-grant")).outcome == "not_found"
    assert (await change_one(benefits, "revoke", "revoke", "no-such-grant")).outcome == "not_found"


async def test_a_batch_naming_one_grant_twice_applies_the_first_key_only(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    granted = await grant_one(benefits, request("g", spec()))
    other = await grant_one(benefits, request("h", spec()))
    assert granted.grant_id is not None and other.grant_id is not None
    changes = [
        GrantChangeRequest(key="r1", grant_id=granted.grant_id, at=T0),
        GrantChangeRequest(key="r2", grant_id=granted.grant_id, at=T0),
        GrantChangeRequest(key="r3", grant_id=other.grant_id, at=T0),
        GrantChangeRequest(key="r1", grant_id=granted.grant_id, at=T0),
    ]
    results = (await benefits.redeem(RedeemGrantInput(requests=changes))).results
    assert [r.outcome for r in results] == [
        "redeemed",
        "already_redeemed",
        "redeemed",
        "redeemed",
    ]


async def test_expire_due_expires_only_granted_grants_past_their_time(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    short, long = spec(validity="1d"), spec(validity="10d")
    expiring = [await grant_one(benefits, request(f"s{i}", short)) for i in range(3)]
    await grant_one(benefits, request("long", long))
    await grant_one(benefits, request("other-line", short, benefit="points"))
    assert expiring[0].grant_id is not None
    await change_one(benefits, "redeem", "redeem", expiring[0].grant_id)
    at = T0 + timedelta(days=2)
    assert (await benefits.expire_due(ExpireGrantsInput(at=T0 + timedelta(days=1)))).expired == 0
    assert (await benefits.expire_due(ExpireGrantsInput(at=at))).expired == 3
    assert (await benefits.expire_due(ExpireGrantsInput(at=at))).expired == 0
    status = await benefits.status(LINE, "cashback")
    assert status.grants == {"granted": 1, "redeemed": 1, "expired": 2, "revoked": 0}
    # Expired grants were handed out: the ledger keeps them.
    assert status.units_granted == 4


async def test_expire_due_can_keep_to_one_business_line(sessions: SessionFactory) -> None:
    benefits = BenefitActivities(sessions)
    await grant_one(benefits, request("g", spec(validity="1d")))
    at = T0 + timedelta(days=2)
    assert (
        await benefits.expire_due(ExpireGrantsInput(at=at, business_line="retail"))
    ).expired == 0
    assert (await benefits.expire_due(ExpireGrantsInput(at=at, business_line=LINE))).expired == 1


async def test_validity_until_fixes_the_expiry_and_a_past_until_grants_nothing(
    sessions: SessionFactory,
) -> None:
    benefits = BenefitActivities(sessions)
    until = spec(stock=10, validity={"until": "2026-03-31T23:59:59+08:00"})
    granted = await grant_one(benefits, request("g", until))
    assert granted.expires_at == datetime(2026, 3, 31, 15, 59, 59, tzinfo=UTC)
    after_end = await grant_one(benefits, request("h", until, at=T0 + timedelta(days=31)))
    assert (after_end.outcome, after_end.reason) == ("exhausted", "validity_ended")
    assert await ledger(sessions) == (1, 20.0)


# --- the activity's payloads ---------------------------------------------------------------


def test_grant_input_survives_temporals_json_round_trip() -> None:
    converter = pydantic_data_converter.payload_converter
    original = GrantBenefitInput(
        requests=[request("k", spec(stock=5, budget=99.5, perUser={"max": 1, "within": "7d"}))]
    )
    (payload,) = converter.to_payloads([original])
    (restored,) = converter.from_payloads([payload], [GrantBenefitInput])
    assert restored == original
