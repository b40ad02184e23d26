"""Reading resources and their history through the API, and segments' count and sample."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import ApiClients
from tests.api.support import YAML, count, problem, publish
from tests.workflows.test_campaign import SAVER

SEGMENT = """\
apiVersion: cjo/v1
kind: Segment
metadata:
  name: big-savers
  businessLine: {line}
spec:
  match:
    all:
      - {{attr: aum, gte: {floor}}}
"""
WITH_TAG = SEGMENT + "      - {{tag: payroll}}\n"


async def apply(http: httpx.AsyncClient, text: str) -> dict[str, Any]:
    answer = await http.post("/v1/resources", content=text.encode(), headers=YAML)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["applied"][0])


async def test_list_get_versions_and_diff(db_app: ApiClients) -> None:
    admin = await db_app.client("admin")
    retail = await db_app.client("viewer", ["retail"])
    card = await db_app.client("viewer", ["credit-card"])
    first = await apply(admin, SEGMENT.format(line="retail", floor=50000))
    second = await apply(admin, SEGMENT.format(line="retail", floor=80000))
    third = await apply(admin, WITH_TAG.format(line="retail", floor=80000))
    await publish(admin, "card_activation.yaml")

    # Every head, a page at a time, in (kind, line, name) order; each caller its lines only.
    seen: list[tuple[str, str, str]] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await admin.get("/v1/resources", params=params)).json()
        seen.extend((r["kind"], r["business_line"], r["name"]) for r in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == await count(db_app.sessions, "resources")
    (only,) = (await retail.get("/v1/resources")).json()["items"]
    assert only["name"] == "big-savers" and only["revisions"] == 3
    assert only["latest_version"] == third["version"]
    assert {r["business_line"] for r in (await card.get("/v1/resources")).json()["items"]} == {
        "credit-card"
    }
    journeys = (await admin.get("/v1/resources", params={"kind": "Journey"})).json()["items"]
    assert [j["name"] for j in journeys] == ["card-activation"]
    problem(await card.get("/v1/resources", params={"business_line": "retail"}), 404)

    newest = (await retail.get("/v1/resources/Segment/big-savers")).json()
    assert newest["version"] == third["version"] and newest["revision"] == 3 and newest["latest"]
    assert newest["document"]["spec"]["match"]["all"][1] == {"tag": "payroll"}
    assert newest["plan"] is None and "payroll" in newest["source"]
    problem(await card.get("/v1/resources/Segment/big-savers"), 404)
    problem(await retail.get("/v1/resources/Segment/no-such"), 404)
    problem(await retail.get("/v1/resources/Gadget/big-savers"), 422)
    journey = (await card.get("/v1/resources/Journey/card-activation")).json()
    assert journey["plan"]["journey"]["name"] == "card-activation"

    versions = (await retail.get("/v1/resources/Segment/big-savers/versions")).json()
    assert [(v["revision"], v["latest"]) for v in versions["items"]] == [
        (3, True),
        (2, False),
        (1, False),
    ]
    page = (
        await retail.get("/v1/resources/Segment/big-savers/versions", params={"limit": 2})
    ).json()
    rest = (
        await retail.get(
            "/v1/resources/Segment/big-savers/versions", params={"cursor": page["next_cursor"]}
        )
    ).json()
    assert [v["revision"] for v in page["items"] + rest["items"]] == [3, 2, 1]
    by_revision = (await retail.get("/v1/resources/Segment/big-savers/versions/1")).json()
    by_hash = (
        await retail.get(f"/v1/resources/Segment/big-savers/versions/{first['version']}")
    ).json()
    assert by_revision == by_hash and by_hash["revision"] == 1 and not by_hash["latest"]
    assert by_hash["document"]["spec"]["match"]["all"] == [{"attr": "aum", "gte": 50000}]
    problem(await retail.get("/v1/resources/Segment/big-savers/versions/9"), 404)

    diff = (
        await retail.get("/v1/resources/Segment/big-savers/diff", params={"from": 1, "to": 2})
    ).json()
    assert diff["from"] == {"version": first["version"], "revision": 1}
    assert diff["to"] == {"version": second["version"], "revision": 2}
    assert diff["changes"] == [
        {"path": "spec.match.all[0].gte", "op": "changed", "before": 50000, "after": 80000}
    ]
    lines = diff["unified"].splitlines()
    assert lines[0] == f"--- big-savers@1 ({first['version']})"
    assert "-      gte: 50000" in lines and "+      gte: 80000" in lines
    # `to` defaults to the newest; a version may be named by its hash.
    added = (
        await retail.get(
            "/v1/resources/Segment/big-savers/diff", params={"from": second["version"]}
        )
    ).json()
    assert added["to"]["revision"] == 3
    assert added["changes"] == [
        {"path": "spec.match.all[1]", "op": "added", "before": None, "after": {"tag": "payroll"}}
    ]
    assert "+    - tag: payroll" in added["unified"].splitlines()
    same = (
        await retail.get("/v1/resources/Segment/big-savers/diff", params={"from": 3, "to": 3})
    ).json()
    assert same["changes"] == [] and same["unified"] == ""
    problem(await retail.get("/v1/resources/Segment/big-savers/diff", params={"from": "x"}), 404)
    problem(await retail.get("/v1/resources/Segment/big-savers/diff"), 422)

    # The same name in two lines: an admin of both must say which.
    await apply(admin, SEGMENT.format(line="wealth", floor=1))
    ambiguous = problem(await admin.get("/v1/resources/Segment/big-savers"), 422)
    assert "retail, wealth" in ambiguous["detail"]
    wealth = await admin.get("/v1/resources/Segment/big-savers", params={"business_line": "wealth"})
    assert wealth.json()["document"]["spec"]["match"]["all"][0]["gte"] == 1


async def test_segment_count_and_a_masked_sample(db_app: ApiClients) -> None:
    admin = await db_app.client("admin")
    viewer = await db_app.client("viewer", ["retail"])
    outsider = await db_app.client("viewer", ["credit-card"])
    journey = await publish(admin, "dormant_savers.yaml")
    savers = [
        {"id": f"saver-{n}", "name": "王小明", "phone": f"1380000000{n}", **SAVER} for n in range(3)
    ]
    for saver in savers:
        saver["email"] = f"wang.{saver['id']}@example.com"
    others = [{"id": "active", **SAVER, "lifecycle": "mature"}, {"id": "poor", "attrs": {"aum": 1}}]
    created = await admin.post("/v1/users/batch", json={"users": savers + others})
    assert created.status_code == 200, created.text
    segment = (await viewer.get("/v1/resources/Segment/dormant-savers")).json()

    counted = (await viewer.get("/v1/segments/dormant-savers/count")).json()
    assert counted["count"] == 3 and counted["business_line"] == journey["business_line"]
    assert counted["version"] == segment["version"] and counted["segment"] == "dormant-savers"
    sample = (
        await viewer.get(
            "/v1/segments/dormant-savers/sample", params={"size": 10, "business_line": "retail"}
        )
    ).json()
    members = {member["id"]: member for member in sample["members"]}
    assert set(members) == {saver["id"] for saver in savers}
    for saver in savers:
        shown = members[saver["id"]]
        assert shown["name"] == "王*明"
        assert shown["phone"] != saver["phone"] and "*" in shown["phone"]
        assert shown["phone"][:3] == "138" and shown["phone"][-1] == saver["phone"][-1]
        assert shown["email"] != saver["email"] and "*" in shown["email"]
        assert shown["email"].endswith("@example.com")
        assert shown["lifecycle"] == "dormant" and shown["tags"] == ["payroll"]
    one = (await viewer.get("/v1/segments/dormant-savers/sample", params={"size": 1})).json()
    assert len(one["members"]) == 1
    problem(await outsider.get("/v1/segments/dormant-savers/count"), 404)
    problem(await viewer.get("/v1/segments/no-such/count"), 404)
    problem(await viewer.get("/v1/segments/dormant-savers/sample", params={"size": 0}), 422)
