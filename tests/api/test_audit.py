"""The audit log: one row per mutating call with who, what and hashes; read by admins only;
refused any change by the database itself. (Every API test also checks, on teardown, that
its own calls left exactly one row each: see `conftest.AuditLedger`.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cjo.activities.people.profiles import ProfileActivities, ProfileContextInput
from cjo.api.audit import state_hash
from cjo.api.auth import PrincipalDep
from cjo.control.audit_trail import AuditRow, AuditTrail
from cjo.store.db import SessionFactory, reading, transaction
from tests.api.conftest import ApiClients, AppFactory
from tests.api.support import count, problem


async def audit_rows(app: ApiClients, **query: Any) -> list[dict[str, Any]]:
    admin = await app.client("admin")
    answer = await admin.get("/v1/audit", params=query)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_each_mutating_call_writes_one_row_saying_who_did_what(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    key = await db_app.mint("operator", ["retail"], name="crm")
    operator = await db_app.client(headers={"X-API-Key": key})
    viewer = await db_app.client("viewer", ["retail"])
    anonymous = await db_app.client(headers={})
    first = await operator.put("/v1/users/u1", json={"name": "A"}, headers={"X-Request-ID": "r-1"})
    assert first.status_code == 200 and first.headers["x-request-id"] == "r-1"
    second = await operator.put("/v1/users/u1", json={"name": "B"})
    assert (await operator.get("/v1/users/u1")).status_code == 200  # a read: no row
    problem(
        await operator.put(
            "/v1/users/nobody/consents", json={"consents": {"sms": True}, "source": "t"}
        ),
        404,
    )
    problem(await viewer.put("/v1/users/u1", json={"name": "C"}), 403)
    problem(await anonymous.put("/v1/users/u1", json={"name": "D"}), 401)  # no principal: no row

    rows = list(reversed(await audit_rows(db_app)))
    assert [(r["action"], r["status"], r["role"]) for r in rows] == [
        ("users.put_user", 200, "operator"),
        ("users.put_user", 200, "operator"),
        ("users.put_consents", 404, "operator"),
        ("users.put_user", 403, "viewer"),
    ]
    created, changed = rows[0], rows[1]
    assert created["actor"] == key.split(".")[0] and created["detail"]["principal"] == "crm"
    assert created["business_line"] == "retail"  # the line its only line
    assert created["target"] == "user/u1" and created["request_id"] == "r-1"
    assert changed["request_id"] == second.headers["x-request-id"] != "r-1"
    assert created["detail"]["method"] == "PUT" and created["detail"]["path"] == "/v1/users/u1"
    # Hashes of the profile before and after: the second change starts where the first ended.
    (profile,) = (
        await ProfileActivities(sessions).profile_context(ProfileContextInput(user_ids=["u1"]))
    ).profiles
    assert created["before_hash"] is None  # there was no profile
    assert created["after_hash"] == changed["before_hash"] != changed["after_hash"]
    assert changed["after_hash"] == state_hash(profile)
    assert rows[3]["target"] == "/v1/users/u1"  # refused before the route named its target


async def test_the_log_is_read_by_admins_with_filters_and_pages(db_app: ApiClients) -> None:
    retail = await db_app.client("operator", ["retail"])
    wealth = await db_app.client("operator", ["wealth"])
    for n in range(3):
        assert (await retail.put(f"/v1/users/r{n}", json={"name": "R"})).status_code == 200
    assert (await wealth.put("/v1/users/w0", json={"name": "W"})).status_code == 200
    problem(await retail.get("/v1/audit"), 403)
    problem(await (await db_app.client("approver", ["*"])).get("/v1/audit"), 403)

    everything = await audit_rows(db_app)
    assert [row["target"] for row in everything] == ["user/w0", "user/r2", "user/r1", "user/r0"]
    assert [r["target"] for r in await audit_rows(db_app, target="user/r1")] == ["user/r1"]
    wealth_actor = everything[0]["actor"]
    assert [r["target"] for r in await audit_rows(db_app, actor=wealth_actor)] == ["user/w0"]
    assert len(await audit_rows(db_app, action="users.put_user")) == 4
    assert await audit_rows(db_app, action="campaigns.launch") == []
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await audit_rows(db_app, since=later) == []

    admin = await db_app.client("admin")
    page = (await admin.get("/v1/audit", params={"limit": 3})).json()
    rest = (await admin.get("/v1/audit", params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert [r["target"] for r in page["items"] + rest["items"]] == [r["target"] for r in everything]
    assert rest["next_cursor"] is None
    problem(await admin.get("/v1/audit", params={"cursor": "not-ours"}), 422)
    # An admin of one line reads that line's rows only.
    wealth_admin = await db_app.client("admin", ["wealth"])
    seen = (await wealth_admin.get("/v1/audit")).json()["items"]
    assert [row["target"] for row in seen] == ["user/w0"]


async def test_no_route_changes_the_log_and_the_database_refuses_to(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    methods = {
        method
        for route in iter_route_contexts(db_app.app.routes)
        if (route.path or "").startswith("/v1/audit")
        for method in route.methods or ()
    }
    assert methods == {"GET"}
    admin = await db_app.client("admin")
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        assert (await admin.request(method, "/v1/audit")).status_code == 405
    row = AuditRow(
        actor="key_x",
        role="admin",
        business_line="retail",
        action="users.put_user",
        target="user/u1",
        request_id="r",
        status=200,
        before_hash=None,
        after_hash="a" * 64,
    )
    await AuditTrail(sessions).append(row)
    before = await count(sessions, "audit_log")
    for statement in (
        "UPDATE audit_log SET actor = 'someone-else'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with transaction(sessions) as connection:
                await connection.execute(text(statement))
    assert await count(sessions, "audit_log") == before
    async with reading(sessions) as connection:
        actors = (await connection.execute(text("SELECT DISTINCT actor FROM audit_log"))).all()
    assert "someone-else" not in {actor for (actor,) in actors}
    # The row appended by hand above is not a call: keep the teardown's count honest.
    db_app.ledger.calls.append("(appended directly)")


def test_state_hashes_are_of_canonical_json() -> None:
    assert state_hash({"b": 1, "a": [1, "é"]}) == state_hash({"a": [1, "é"], "b": 1})
    assert state_hash({"a": 1}) != state_hash({"a": 2})
    assert len(state_hash(None)) == 64


async def test_a_call_that_fails_unexpectedly_is_audited_as_a_500(
    make_db_app: AppFactory,
) -> None:
    app = make_db_app()

    async def fail(principal: PrincipalDep) -> None:
        raise RuntimeError(f"a bug met by {principal.name}")

    # A route of the test's own: the app has none that fails on purpose.
    app.app.add_api_route("/v1/test-failure", fail, methods=["POST"])
    operator = await app.client("operator", ["retail"])
    answer = await operator.post("/v1/test-failure")
    assert problem(answer, 500)["detail"] == "an unexpected error happened; it has been logged"
    (row,) = await audit_rows(app)
    assert (row["action"], row["status"], row["business_line"]) == (
        "test_audit.fail",
        500,
        "retail",
    )
