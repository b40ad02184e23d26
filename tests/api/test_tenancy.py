"""Business-line isolation: a principal of one line (retail) gets, for anything of other
lines (credit-card, wealth), the very answer a missing thing gets (404), and no response
it receives holds any of their data. Checked with the retail admin, so that it is the
scope, not the role, that keeps it out."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from cjo.store.db import SessionFactory
from cjo.store.schema import Enrolment
from tests.api.conftest import ApiClients
from tests.api.support import EXAMPLES, YAML, problem, publish
from tests.delivery.message_rows import message, store

# What only the other lines have: none of it may appear in an answer to retail.
OTHER_LINES_DATA = [
    "credit-card",
    "wealth",
    "card-activation",
    "activation-cashback-20",
    "proven-investors",
    "wealth-product-funnel",
    "secret wealth offer",
]


def assert_nothing_of_other_lines(answer: httpx.Response, hidden: list[str]) -> None:
    """No data of other lines in the answer, beyond what the caller itself sent (a 404
    that repeats the name asked for tells nothing)."""
    request = answer.request
    sent = str(request.url) + request.content.decode(errors="replace")
    for secret in [*OTHER_LINES_DATA, *hidden]:
        if secret not in sent:
            assert secret not in answer.text, f"{request.method} {request.url}: {secret!r}"


def same_as_missing(hidden: httpx.Response, missing: httpx.Response, swap: dict[str, str]) -> None:
    """The two answers are one and the same once the names asked for are swapped."""
    problem(hidden, 404)
    problem(missing, 404)
    text = missing.text
    for made_up, real in swap.items():
        text = text.replace(made_up, real)
    assert hidden.text == text, (hidden.text, missing.text)


async def test_a_principal_of_one_line_sees_nothing_of_the_others(
    full_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await full_app.client("admin")
    await publish(admin, "mobile_onboarding.yaml")  # retail
    await publish(admin, "card_activation.yaml")  # credit-card
    await publish(admin, "wealth_funnel.yaml")  # wealth

    async def campaign(journey: str, line: str) -> str:
        made = await admin.post("/v1/campaigns", json={"journey": journey, "business_line": line})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    ours = await campaign("mobile-onboarding", "retail")
    theirs = await campaign("card-activation", "credit-card")
    assert (await admin.put("/v1/users/u1", json={"name": "Li"})).status_code == 200
    await store(
        sessions,
        message("m-retail", channel="inbox", body="retail news"),
        message(
            "m-wealth",
            channel="inbox",
            business_line="wealth",
            journey="wealth-product-funnel",
            body="secret wealth offer",
            key="journey/wealth/wealth-product-funnel/u1@run/intro/m-wealth",
        ),
        *[
            Enrolment(
                run_key=f"journey/{line}/{journey}/u1#1",
                workflow_id=f"journey/{line}/{journey}/u1",
                business_line=line,
                journey=journey,
                plan_version="v1",
                user_id="u1",
            )
            for line, journey in (
                ("retail", "mobile-onboarding"),
                ("wealth", "wealth-product-funnel"),
            )
        ],
    )

    retail_key = await full_app.mint("admin", ["retail"])
    retail = await full_app.client(headers={"X-API-Key": retail_key})
    answers: list[httpx.Response] = []

    async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = await retail.request(method, path, **kwargs)
        answers.append(answer)
        return answer

    # Each thing of another line answers as the same request for a made-up name does.
    pairs: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/campaigns/{}", {}),
        ("GET", "/v1/campaigns/{}/stats", {}),
        ("GET", "/v1/campaigns/{}/approvals", {}),
        ("GET", "/v1/campaigns/{}/steps/welcome_sms/users", {}),
        ("PATCH", "/v1/campaigns/{}", {"json": {}}),
        ("POST", "/v1/campaigns/{}/reject", {"json": {"reason": "no"}}),
        *[
            ("POST", f"/v1/campaigns/{{}}/{move}", {})
            for move in ("submit", "approve", "launch", "pause", "resume", "stop")
        ],
    ]
    for method, template, kwargs in pairs:
        hidden = await call(method, template.format(theirs), **kwargs)
        missing = await call(method, template.format("c0ffee0000000000"), **kwargs)
        same_as_missing(hidden, missing, {"c0ffee0000000000": theirs})
    for path, made_up, real in [
        ("/v1/resources/Journey/{}", "no-such-journey", "card-activation"),
        ("/v1/resources/Journey/{}/versions", "no-such-journey", "card-activation"),
        ("/v1/resources/Journey/{}/diff?from=1", "no-such-journey", "card-activation"),
        ("/v1/segments/{}/count", "no-such-segment", "proven-investors"),
        ("/v1/segments/{}/sample", "no-such-segment", "proven-investors"),
        ("/v1/benefits/{}/status", "no-such-benefit", "activation-cashback-20"),
        ("/v1/resources?business_line={}", "no-such-line", "wealth"),
        ("/v1/resources/Journey/wealth-product-funnel?business_line={}", "nowhere", "wealth"),
    ]:
        hidden = await call("GET", path.format(real))
        missing = await call("GET", path.format(made_up))
        same_as_missing(hidden, missing, {made_up: real})
    hidden = await call("POST", "/v1/users/u1/inbox/m-wealth/read")
    missing = await call("POST", "/v1/users/u1/inbox/m-nothing/read")
    same_as_missing(hidden, missing, {"m-nothing": "m-wealth"})
    created = await call(
        "POST", "/v1/campaigns", json={"journey": "card-activation", "business_line": "credit-card"}
    )
    assert created.status_code in (404, 422) and "draft" not in created.text
    bundle = (EXAMPLES / "card_activation.yaml").read_bytes()
    for path in ("/v1/resources", "/v1/resources/validate"):
        refused = problem(await call("POST", path, content=bundle, headers=YAML), 404)
        assert refused["detail"] == "no business line credit-card"

    # Lists hold only retail's.
    listed = (await call("GET", "/v1/campaigns")).json()["items"]
    assert [item["id"] for item in listed] == [ours]
    resources = (await call("GET", "/v1/resources")).json()["items"]
    assert resources and {item["business_line"] for item in resources} == {"retail"}
    journeys = (await call("GET", "/v1/users/u1/journeys")).json()["items"]
    assert [run["business_line"] for run in journeys] == ["retail"]
    messages = (await call("GET", "/v1/users/u1/messages")).json()["items"]
    assert [item["id"] for item in messages] == ["m-retail"]
    inbox = (await call("GET", "/v1/users/u1/inbox")).json()
    assert [item["id"] for item in inbox["items"]] == ["m-retail"] and inbox["unread"] == 1
    assert (await call("POST", "/v1/users/u1/inbox/m-retail/read")).status_code == 200
    # The retail admin's audit log holds retail's rows only: its own calls (whose paths
    # name what it asked for, as it asked), and the other admin's calls about retail.
    audit = (await retail.get("/v1/audit", params={"limit": 500})).json()["items"]
    assert audit and {row["business_line"] for row in audit} == {"retail"}
    others = [row for row in audit if row["actor"] != retail_key.split(".")[0]]
    assert {row["target"] for row in others} == {"bundle/<request>", f"campaign/{ours}"}
    for secret in [*OTHER_LINES_DATA, theirs]:
        assert secret not in json.dumps(others)

    for answer in answers:
        assert_nothing_of_other_lines(answer, hidden=[theirs, "m-wealth"])
    # The admin of every line, for contrast, sees both lines' messages and campaigns.
    everything = (await admin.get("/v1/users/u1/messages")).json()["items"]
    assert sorted(item["id"] for item in everything) == ["m-retail", "m-wealth"]
    assert theirs in (await admin.get("/v1/campaigns")).text
    assert re.search("wealth", (await admin.get("/v1/users/u1/journeys")).text)
