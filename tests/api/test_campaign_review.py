"""Maker-checker through the API: submit, approve (never one's own), launch only approved.

Real keys of real roles, the real database and the Temporal test server with a worker.
The app here needs a second approval above an audience of 3, so small audiences can show
both sides of the threshold.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import ApiClients, AppFactory
from tests.api.support import EXAMPLES, YAML, add_customer, problem, publish
from tests.workflows.test_campaign import SAVER

SECOND_ABOVE = 3
CARD = "card_activation.yaml"


@pytest.fixture
def review_app(make_full_app: AppFactory) -> ApiClients:
    return make_full_app(approval_second_above=SECOND_ABOVE)


def key_id(http: httpx.AsyncClient) -> str:
    """The principal id of a key-holding client: the key's id, before the dot."""
    return str(http.headers["X-API-Key"]).split(".", 1)[0]


async def create(http: httpx.AsyncClient, journey: dict[str, Any], **fields: Any) -> dict[str, Any]:
    answer = await http.post(
        "/v1/campaigns",
        json={"journey": journey["name"], "business_line": journey["business_line"], **fields},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def move(http: httpx.AsyncClient, campaign: str, action: str, **body: Any) -> dict[str, Any]:
    answer = await http.post(f"/v1/campaigns/{campaign}/{action}", json=body or None)
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


async def customers(admin: httpx.AsyncClient, count: int) -> None:
    for n in range(count):
        await add_customer(admin, f"u{n}")


async def test_only_another_approver_can_approve_and_only_approved_launches(
    review_app: ApiClients,
) -> None:
    admin = await review_app.client("admin")
    maker = await review_app.client("operator", ["credit-card"])
    checker = await review_app.client("approver", ["credit-card"])
    outsider = await review_app.client("approver", ["retail"])
    journey = await publish(admin, CARD)
    await customers(admin, 2)

    draft = await create(maker, journey)
    campaign = draft["id"]
    assert draft["state"] == "draft" and draft["created_by"] == key_id(maker)
    refused = problem(await maker.post(f"/v1/campaigns/{campaign}/launch"), 403)
    assert refused["type"] == "urn:cjo:problem:approval-required"
    assert "must be submitted and approved" in refused["detail"]
    problem(await checker.post(f"/v1/campaigns/{campaign}/approve"), 409)  # not submitted

    submitted = await move(maker, campaign, "submit")
    assert submitted["state"] == "submitted" and submitted["submitted_by"] == key_id(maker)
    # An event-triggered journey's audience: every known customer (2), within maxEntries.
    assert submitted["audience_size"] == 2 and submitted["approvals_required"] == 1
    problem(await maker.post(f"/v1/campaigns/{campaign}/submit"), 409)
    refused = problem(await maker.post(f"/v1/campaigns/{campaign}/launch"), 403)
    assert "must be approved" in refused["detail"]
    # An operator lacks the role; an approver of another line does not see the campaign.
    assert problem(await maker.post(f"/v1/campaigns/{campaign}/approve"), 403)["type"] == (
        "urn:cjo:problem:forbidden"
    )
    problem(await outsider.post(f"/v1/campaigns/{campaign}/approve"), 404)

    # An approver may make campaigns too, but never approve their own submission.
    own = await create(checker, journey)
    await move(checker, own["id"], "submit")
    self_approval = problem(await checker.post(f"/v1/campaigns/{own['id']}/approve"), 403)
    assert self_approval["type"] == "urn:cjo:problem:self-approval"
    assert (await admin.get(f"/v1/campaigns/{own['id']}")).json()["state"] == "submitted"

    approved = await move(checker, campaign, "approve", comment="copy and limits checked")
    assert approved["state"] == "approved"
    review = (await maker.get(f"/v1/campaigns/{campaign}/approvals")).json()
    assert review["approved_by"] == [key_id(checker)] and review["approvals_required"] == 1
    (approval,) = review["approvals"]
    assert approval["journey_version"] == journey["version"] and approval["counts"]
    assert approval["comment"] == "copy and limits checked"

    launched = await move(maker, campaign, "launch")
    assert launched["state"] == "running" and launched["launched_at"]
    problem(await maker.post(f"/v1/campaigns/{campaign}/launch"), 409)  # launched already
    problem(await maker.patch(f"/v1/campaigns/{campaign}", json={"page_size": 9}), 409)
    assert (await move(maker, campaign, "stop"))["state"] == "stopped"
    # A campaign submitted but never launched is withdrawn without a workflow.
    assert (await move(checker, own["id"], "stop"))["state"] == "stopped"

    listed = (await outsider.get("/v1/campaigns")).json()
    assert listed == {"items": [], "next_cursor": None}
    page = (await maker.get("/v1/campaigns", params={"limit": 1, "state": "stopped"})).json()
    (newest,) = page["items"]
    rest = (await maker.get("/v1/campaigns", params={"cursor": page["next_cursor"]})).json()
    assert {newest["id"], *(c["id"] for c in rest["items"])} == {campaign, own["id"]}
    assert rest["next_cursor"] is None


async def test_a_change_of_journey_version_voids_the_approval(review_app: ApiClients) -> None:
    admin = await review_app.client("admin")
    maker = await review_app.client("operator", ["credit-card"])
    checker = await review_app.client("approver", ["credit-card"])
    other_checker = await review_app.client("approver", ["credit-card"])
    first = await publish(admin, CARD)
    await customers(admin, 6)
    campaign = (await create(maker, first))["id"]
    await move(maker, campaign, "submit")
    await move(checker, campaign, "approve")
    await move(other_checker, campaign, "approve")

    # A new version of the journey (a lower maxEntries) leaves the pinned campaign alone.
    text = (
        (EXAMPLES / CARD).read_text(encoding="utf-8").replace("maxEntries: 200000", "maxEntries: 5")
    )
    applied = await admin.post("/v1/resources", content=text.encode(), headers=YAML)
    second = next(a for a in applied.json()["applied"] if a["kind"] == "Journey")
    assert second["version"] != first["version"]
    pinned = (await maker.get(f"/v1/campaigns/{campaign}")).json()
    assert pinned["state"] == "approved" and pinned["journey_version"] == first["version"]

    unknown = await maker.patch(f"/v1/campaigns/{campaign}", json={"version": "nope"})
    assert problem(unknown, 422)["type"] == "urn:cjo:problem:unknown-journey"
    repinned = await maker.patch(f"/v1/campaigns/{campaign}", json={"version": second["version"]})
    assert repinned.status_code == 200, repinned.text
    assert repinned.json()["state"] == "draft"
    assert repinned.json()["journey_version"] == second["version"]
    voided = (await maker.get(f"/v1/campaigns/{campaign}/approvals")).json()["approvals"]
    assert len(voided) == 2
    for approval in voided:
        assert approval["voided_at"] is not None and not approval["counts"]
        assert first["version"] in approval["void_reason"]
        assert second["version"] in approval["void_reason"]
    problem(await maker.post(f"/v1/campaigns/{campaign}/launch"), 403)

    again = await maker.patch(f"/v1/campaigns/{campaign}", json={"version": second["version"]})
    assert (
        again.json()["state"] == "draft"
        and again.json()["updated_at"] == (repinned.json()["updated_at"])
    )  # the same version again changes nothing
    resubmitted = await move(maker, campaign, "submit")
    # 6 customers, but the new version admits at most 5: still above 3, so two approvals.
    assert resubmitted["audience_size"] == 5 and resubmitted["approvals_required"] == 2
    stale = await checker.post(
        f"/v1/campaigns/{campaign}/approve", json={"journey_version": first["version"]}
    )
    assert second["version"] in problem(stale, 409)["detail"]
    await move(checker, campaign, "approve", journey_version=second["version"])
    # Settings are part of what was approved too.
    changed = await maker.patch(f"/v1/campaigns/{campaign}", json={"rate_per_second": 5})
    assert changed.json()["state"] == "draft" and changed.json()["settings"] == {
        "rate_per_second": 5.0
    }
    review = (await maker.get(f"/v1/campaigns/{campaign}/approvals")).json()
    assert review["approved_by"] == [] and len(review["approvals"]) == 3
    assert "settings changed" in review["approvals"][2]["void_reason"]


async def test_above_the_threshold_two_distinct_approvers_are_needed(
    review_app: ApiClients,
) -> None:
    admin = await review_app.client("admin")
    maker = await review_app.client("operator", ["credit-card", "retail"])
    first = await review_app.client("approver", ["credit-card", "retail"])
    second = await review_app.client("approver", ["credit-card"])
    journey = await publish(admin, CARD)
    await customers(admin, SECOND_ABOVE + 1)
    campaign = (await create(maker, journey))["id"]
    submitted = await move(maker, campaign, "submit")
    assert submitted["audience_size"] == 4 and submitted["approvals_required"] == 2

    once = await move(first, campaign, "approve")
    assert once["state"] == "submitted"  # one of two
    twice = problem(await first.post(f"/v1/campaigns/{campaign}/approve"), 409)
    assert twice["type"] == "urn:cjo:problem:duplicate-approval"
    problem(await maker.post(f"/v1/campaigns/{campaign}/launch"), 403)
    review = (await maker.get(f"/v1/campaigns/{campaign}/approvals")).json()
    assert review["approved_by"] == [key_id(first)] and len(review["approvals"]) == 1

    assert (await move(second, campaign, "approve"))["state"] == "approved"
    review = (await maker.get(f"/v1/campaigns/{campaign}/approvals")).json()
    assert sorted(review["approved_by"]) == sorted([key_id(first), key_id(second)])
    assert (await move(maker, campaign, "launch"))["state"] == "running"
    assert (await move(maker, campaign, "stop"))["state"] == "stopped"

    # An audience journey's audience is its segment's count at submission: 3 of 5 match.
    savers = await publish(admin, "dormant_savers.yaml")
    users = [{"id": f"saver-{n}", **SAVER} for n in range(3)]
    users += [{"id": f"active-{n}", **SAVER, "lifecycle": "mature"} for n in range(2)]
    assert (await admin.post("/v1/users/batch", json={"users": users})).status_code == 200
    audience = (await create(maker, savers))["id"]
    submitted = await move(maker, audience, "submit")
    assert submitted["audience_size"] == 3 and submitted["approvals_required"] == 1
    rejected = await move(first, audience, "reject", reason="wrong quarter")
    assert rejected["state"] == "draft" and rejected["submitted_by"] is None
