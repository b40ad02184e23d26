"""Benefits through the API: redeem and revoke with Idempotency-Key, status, a user's grants.

Grants are made by the real grant activity from the published benefit, as a journey's
grant step makes them; everything else goes through the API with real keys.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from cjo.activities.benefits.grants import BenefitActivities
from cjo.dsl import BenefitSpec
from cjo.steps.contracts import GrantBenefitInput, GrantRequest
from cjo.store.db import SessionFactory, reading
from tests.api.conftest import ApiClients
from tests.api.support import count, problem, publish

CARD = "card_activation.yaml"
BENEFIT = "activation-cashback-20"
LINE = "credit-card"


async def grant(
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    users: list[str],
    benefit: str = BENEFIT,
    **changes: Any,
) -> list[str]:
    """One grant per user of the published cashback's spec (changed as given) as `benefit`;
    their ids."""
    published = (
        await http.get(f"/v1/resources/Benefit/{BENEFIT}", params={"business_line": LINE})
    ).json()
    spec = BenefitSpec.model_validate({**published["document"]["spec"], **changes})
    now = datetime.now(UTC)
    outcomes = (
        await BenefitActivities(sessions).grant(
            GrantBenefitInput(
                requests=[
                    GrantRequest(
                        key=f"test/{user}/{n}/{now.timestamp()}",
                        business_line=LINE,
                        benefit=benefit,
                        benefit_version=published["version"],
                        spec=spec,
                        user_id=user,
                        at=now + timedelta(seconds=n),
                    )
                    for n, user in enumerate(users)
                ]
            )
        )
    ).results
    assert {o.outcome for o in outcomes} == {"granted"}, outcomes
    return [str(o.grant_id) for o in outcomes]


async def redeemed_at(sessions: SessionFactory, grant_id: str) -> Any:
    async with reading(sessions) as connection:
        found = await connection.execute(
            text("SELECT redeemed_at FROM grants WHERE id = :id"), {"id": grant_id}
        )
        return found.scalar_one()


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_reuse(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    operator = await db_app.client("operator", [LINE])
    colleague = await db_app.client("operator", [LINE])
    outsider = await db_app.client("operator", ["retail"])
    await publish(admin, CARD)
    users = [{"id": f"u{n}"} for n in range(3)]
    assert (await admin.post("/v1/users/batch", json={"users": users})).status_code == 200
    first_grant, second_grant, third_grant = await grant(sessions, admin, ["u0", "u1", "u2"])
    key = {"Idempotency-Key": "redeem-0421-0001"}

    first = await operator.post(
        f"/v1/grants/{first_grant}/redeem", json={"reason": "branch 0421"}, headers=key
    )
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "redeemed" and first.json()["id"] == first_grant
    assert "Idempotent-Replayed" not in first.headers
    when = await redeemed_at(sessions, first_grant)
    # The same key and body, spelled with other spacing: the first answer again, nothing done.
    again = await operator.post(
        f"/v1/grants/{first_grant}/redeem",
        content=b'{ "reason" :  "branch 0421" }',
        headers={**key, "content-type": "application/json"},
    )
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await redeemed_at(sessions, first_grant) == when
    assert await count(sessions, "idempotency_records") == 1

    other_body = await operator.post(
        f"/v1/grants/{first_grant}/redeem", json={"reason": "branch 0999"}, headers=key
    )
    assert problem(other_body, 409)["type"] == "urn:cjo:problem:idempotency-key-reused"
    other_grant = await operator.post(
        f"/v1/grants/{second_grant}/redeem", json={"reason": "branch 0421"}, headers=key
    )
    assert f"POST /v1/grants/{first_grant}/redeem" in problem(other_grant, 409)["detail"]
    assert (await admin.get("/v1/users/u1/grants")).json()["items"][0]["status"] == "granted"

    # A new key on a settled grant: a 409 of its own, replayed as such.
    settled_key = {"Idempotency-Key": "redeem-0421-0002"}
    settled = await operator.post(f"/v1/grants/{first_grant}/redeem", headers=settled_key)
    body = problem(settled, 409)
    assert body["type"] == "urn:cjo:problem:grant-settled" and "redeemed already" in body["detail"]
    replayed = await operator.post(f"/v1/grants/{first_grant}/redeem", headers=settled_key)
    assert replayed.status_code == 409 and replayed.json() == body
    assert replayed.headers["content-type"] == "application/problem+json"
    assert replayed.headers["Idempotent-Replayed"] == "true"

    # Keys are each principal's own: a colleague's same key is a request of its own.
    theirs = await colleague.post(
        f"/v1/grants/{third_grant}/redeem", json={"reason": "branch 0421"}, headers=key
    )
    assert theirs.status_code == 200 and theirs.json()["id"] == third_grant
    assert "Idempotent-Replayed" not in theirs.headers
    # Without a key nothing is replayed: the second call finds the grant settled.
    assert (await operator.post(f"/v1/grants/{second_grant}/redeem")).status_code == 200
    problem(await operator.post(f"/v1/grants/{second_grant}/redeem"), 409)

    problem(await outsider.post(f"/v1/grants/{second_grant}/revoke"), 404)
    problem(await operator.post("/v1/grants/no-such-grant/redeem", headers=key), 404)
    bad_key = await operator.post(
        f"/v1/grants/{second_grant}/revoke", headers={"Idempotency-Key": "tab\there"}
    )
    problem(bad_key, 422)


async def test_revoke_returns_stock_once_and_status_counts_it(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    operator = await db_app.client("operator", [LINE])
    outsider = await db_app.client("viewer", ["retail"])
    await publish(admin, CARD)
    first_grant, second_grant, _ = await grant(sessions, admin, ["u0", "u1", "u2"])

    status = (await operator.get(f"/v1/benefits/{BENEFIT}/status")).json()
    assert status["stock"] == 10000 and status["budget"] == 200000.0
    assert status["units_granted"] == 3 and status["units_remaining"] == 9997
    assert status["value_granted"] == 60.0 and status["value_remaining"] == 199940.0

    key = {"Idempotency-Key": "revoke-u0"}
    for _ in range(2):
        revoked = await operator.post(f"/v1/grants/{first_grant}/revoke", headers=key)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    await operator.post(f"/v1/grants/{second_grant}/redeem")
    status = (
        await operator.get(f"/v1/benefits/{BENEFIT}/status", params={"business_line": LINE})
    ).json()
    assert status["units_granted"] == 2 and status["units_remaining"] == 9998  # returned once
    assert status["value_remaining"] == 199960.0
    assert status["grants"] == {"granted": 1, "redeemed": 1, "revoked": 1, "expired": 0}
    problem(await outsider.get(f"/v1/benefits/{BENEFIT}/status"), 404)
    problem(await operator.get("/v1/benefits/no-such-benefit/status"), 404)


async def test_a_users_grants_page_newest_first_within_the_callers_lines(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    viewer = await db_app.client("viewer", [LINE])
    outsider = await db_app.client("viewer", ["retail"])
    await publish(admin, CARD)
    await admin.put("/v1/users/u0", json={})
    ids = await grant(sessions, admin, ["u0"] * 5, "welcome-points", perUser=None)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await viewer.get("/v1/users/u0/grants", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    item = (await viewer.get("/v1/users/u0/grants", params={"limit": 1})).json()["items"][0]
    assert item["benefit"] == "welcome-points" and item["value"] == 20.0 and item["unit"] == "CNY"
    assert (await outsider.get("/v1/users/u0/grants")).json() == {"items": [], "next_cursor": None}
    problem(await viewer.get("/v1/users/nobody/grants"), 404)
    problem(await viewer.get("/v1/users/u0/grants", params={"cursor": "garbage"}), 422)


async def test_the_same_key_sent_twice_at_once_redeems_once(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    operator = await db_app.client("operator", [LINE])
    await publish(admin, CARD)
    (grant_id,) = await grant(sessions, admin, ["u0"])
    key = {"Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(operator.post(f"/v1/grants/{grant_id}/redeem", headers=key) for _ in range(4))
    )
    # Each is the first answer (done or replayed) or "still being answered"; never a second
    # redemption, which would be a 409 grant-settled.
    done = [a for a in answers if a.status_code == 200]
    assert done and all(a.json() == done[0].json() for a in done)
    assert done[0].json()["status"] == "redeemed"
    for busy in (a for a in answers if a.status_code != 200):
        assert problem(busy, 409)["type"] == "urn:cjo:problem:idempotency-key-in-use"
        assert "still being answered" in busy.json()["detail"]
    assert await count(sessions, "idempotency_records") == 1
    later = await operator.post(f"/v1/grants/{grant_id}/redeem", headers=key)
    assert later.json() == done[0].json() and later.headers["Idempotent-Replayed"] == "true"
