"""Campaigns end to end through the API: real database, Temporal test server, real worker."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.workflows.campaign import campaign_workflow_id
from tests.api.conftest import ApiClients
from tests.api.support import add_customer, approve, problem, publish
from tests.workflows.support import morning
from tests.workflows.test_campaign import SAVER

CARD = {"tier": "gold", "card_id": "c-1", "card_last4": "1234", "tier_name": "金卡"}


def event(event_id: str, user: str, name: str, ts: datetime, **props: Any) -> dict[str, Any]:
    return {"id": event_id, "user_id": user, "name": name, "props": props, "ts": ts.isoformat()}


async def create(http: httpx.AsyncClient, journey: dict[str, Any], **settings: Any) -> str:
    answer = await http.post(
        "/v1/campaigns",
        json={"journey": journey["name"], "business_line": journey["business_line"], **settings},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["state"] == "draft" and body["journey_version"] == journey["version"]
    return str(body["id"])


async def wait_for_state(http: httpx.AsyncClient, campaign: str, state: str) -> dict[str, Any]:
    """The campaign once its workflow has recorded `state` (its last activities run in real time)."""
    for _ in range(400):
        found: dict[str, Any] = (await http.get(f"/v1/campaigns/{campaign}")).json()
        if found["state"] == state:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign never became {state}: {found}")


async def test_event_campaign_through_the_api(
    env: WorkflowEnvironment, client: Client, api: httpx.AsyncClient, full_app: ApiClients
) -> None:
    journey = await publish(api, "card_activation.yaml")
    await morning(env)  # no quiet hours in the way of the sends
    await add_customer(api, "u1")
    await add_customer(api, "u2")
    campaign = await create(api, journey)
    await approve(api, await full_app.client("approver"), campaign)
    launched = await api.post(f"/v1/campaigns/{campaign}/launch")
    assert launched.status_code == 202, launched.text
    assert launched.json()["state"] == "running" and launched.json()["launched_at"]
    problem(await api.post(f"/v1/campaigns/{campaign}/launch"), 409)  # launched already
    # Pause and resume before any run: routing waits on the state, the workflow follows.
    paused = await api.post(f"/v1/campaigns/{campaign}/pause")
    assert paused.status_code == 202 and paused.json()["state"] == "paused"
    resumed = await api.post(f"/v1/campaigns/{campaign}/resume")
    assert resumed.status_code == 202 and resumed.json()["state"] == "running"
    now = await env.get_current_time()
    issued = await api.post(
        "/v1/events",
        json={
            "events": [
                event("e1", "u1", "card_issued", now, **CARD),
                event("e2", "u2", "card_issued", now, **{**CARD, "tier": "basic"}),
            ]
        },
    )
    assert issued.status_code == 202 and issued.json() == {"accepted": 2, "duplicates": 0}
    journey_run = client.get_workflow_handle("journey/credit-card/card-activation/u1/c-1")
    await env.sleep(timedelta(hours=2))
    waiting = (await api.get(f"/v1/campaigns/{campaign}/stats")).json()
    assert waiting["steps"]["await_activation"]["waiting"] == 1
    activated = await api.post(
        "/v1/events",
        json={
            "events": [event("e3", "u1", "card_activated", now + timedelta(hours=2), card_id="c-1")]
        },
    )
    assert activated.json() == {"accepted": 1, "duplicates": 0}
    outcome = await journey_run.result()
    assert outcome["end_reason"] == "completed"

    stats = (await api.get(f"/v1/campaigns/{campaign}/stats")).json()
    assert stats["campaign_id"] == campaign
    steps = stats["steps"]
    # Every step of the journey is listed; those the run took show it.
    assert set(steps) >= {"risk_check", "nudge", "not_activated", "review_end"}
    for step in ("risk_check", "welcome_sms", "await_activation", "cashback", "cashback_notice"):
        assert steps[step]["entered"] == 1 and steps[step]["waiting"] == 0, step
    assert steps["risk_check"]["outcomes"] == {"pass": 1}
    assert steps["await_activation"]["outcomes"] == {"event": 1}
    assert steps["cashback"]["outcomes"] == {"granted": 1}
    assert steps["nudge"] == {"entered": 0, "waiting": 0, "outcomes": {}}
    assert stats["ended"] == {"completed": 1}
    assert stats["holdout"] == {"entrants": 0, "conversions": 0, "rate": None}

    runs = (await api.get("/v1/users/u1/journeys")).json()
    (run,) = runs["items"]
    assert runs["next_cursor"] is None
    assert run["journey"] == "card-activation" and run["campaign_id"] == campaign
    assert run["status"] == "ended" and run["end_reason"] == "completed"
    assert run["converted_at"] is not None and run["plan_version"] == journey["version"]
    assert [entry["step"] for entry in run["path"]] == outcome["path"]
    assert run["path"][0] == {
        **run["path"][0],
        "step": "risk_check",
        "type": "risk",
        "outcome": "pass",
    }
    assert (await api.get("/v1/users/u2/journeys")).json()["items"] == []  # `where` said no

    stopped = await api.post(f"/v1/campaigns/{campaign}/stop")
    assert stopped.status_code == 202 and stopped.json()["state"] == "stopped"
    status = await client.get_workflow_handle(campaign_workflow_id(campaign)).result()
    assert status["state"] == "stopped"
    problem(await api.post(f"/v1/campaigns/{campaign}/resume"), 409)
    problem(await api.post(f"/v1/campaigns/{campaign}/stop"), 409)
    final = (await api.get(f"/v1/campaigns/{campaign}")).json()
    assert final["state"] == "stopped" and final["ended_at"] is not None


async def test_audience_campaign_through_the_api(
    env: WorkflowEnvironment, client: Client, api: httpx.AsyncClient, full_app: ApiClients
) -> None:
    journey = await publish(api, "dormant_savers.yaml")
    members = [f"saver-{n:02d}" for n in range(30)]
    batch = [{"id": user, **SAVER} for user in members]
    batch.append({"id": "active-saver", **SAVER, "lifecycle": "mature"})
    batch.append({"id": "small-saver", **SAVER, "attrs": {"aum": 100}})
    created = await api.post("/v1/users/batch", json={"users": batch})
    assert created.json() == {"created": 32, "updated": 0}
    for user in members:
        consent = {"consents": {"push": True, "sms": True, "inbox": True}, "source": "test"}
        assert (await api.put(f"/v1/users/{user}/consents", json=consent)).status_code == 200
    campaign = await create(api, journey, page_size=7, rate_per_second=7)
    await approve(api, await full_app.client("approver"), campaign)
    assert (await api.post(f"/v1/campaigns/{campaign}/launch")).status_code == 202
    live = (await api.get(f"/v1/campaigns/{campaign}")).json()["live"]
    assert live is not None and live["state"] == "running"

    # Past the schedule (1 December), enrolment and every run's 12 days of waits.
    await env.sleep(timedelta(days=40))
    final = await wait_for_state(api, campaign, "completed")
    assert final["live"] is None  # a finished campaign is its row

    stats = (await api.get(f"/v1/campaigns/{campaign}/stats")).json()
    holdout = stats["holdout"]
    variants = stats["variants"]
    assert set(variants) == {"rate_led", "care_led"}
    assert 0 < holdout["entrants"] < len(members)  # 10% held out, stable per user
    assert holdout["conversions"] == 0 and holdout["rate"] == 0.0
    in_test = len(members) - holdout["entrants"]
    assert sum(v["entrants"] for v in variants.values()) == in_test
    assert all(v["conversions"] == 0 and v["rate"] == 0.0 for v in variants.values())
    steps = stats["steps"]
    assert steps["message_test"]["entered"] == in_test
    assert steps["message_test"]["outcomes"] == {
        name: figures["entrants"] for name, figures in variants.items()
    }
    sent = steps["send_rate_led"]["entered"] + steps["send_care_led"]["entered"]
    assert sent == in_test
    # No one logged in: everyone in the test waited twice and ended still dormant.
    assert steps["await_login"]["outcomes"] == {"timeout": in_test}
    assert steps["still_dormant"]["entered"] == in_test
    assert all(figures["waiting"] == 0 for figures in steps.values())
    assert sum(stats["ended"].values()) == len(members)

    assert final["settings"] == {
        "page_size": 7,
        "rate_per_second": 7.0,
    }
    run = (await api.get(f"/v1/users/{members[0]}/journeys")).json()["items"][0]
    assert run["journey"] == "dormant-savers-reactivation" and run["status"] == "ended"
    assert run["variant"] in variants or run["holdout"]
    assert (await api.get("/v1/users/active-saver/journeys")).json()["items"] == []


async def test_campaign_errors(api: httpx.AsyncClient) -> None:
    for path in ("", "/stats"):
        body = problem(await api.get(f"/v1/campaigns/nope{path}"), 404)
        assert body["detail"] == "no campaign nope"
    for move in ("launch", "pause", "resume", "stop"):
        problem(await api.post(f"/v1/campaigns/nope/{move}"), 404)
    unknown = await api.post(
        "/v1/campaigns", json={"journey": "card-activation", "business_line": "credit-card"}
    )
    assert problem(unknown, 422)["type"] == "urn:cjo:problem:unknown-journey"
    journey = await publish(api, "card_activation.yaml")
    wrong_version = await api.post(
        "/v1/campaigns",
        json={"journey": journey["name"], "business_line": "credit-card", "version": "v0"},
    )
    problem(wrong_version, 422)
    campaign = await create(api, journey)
    for move in ("pause", "resume"):
        body = problem(await api.post(f"/v1/campaigns/{campaign}/{move}"), 409)
        assert body["type"] == "urn:cjo:problem:conflict" and "draft" in body["detail"]
    draft = (await api.get(f"/v1/campaigns/{campaign}")).json()
    assert draft["live"] is None
    # A draft that was never launched can be stopped, and then never launched.
    stopped = await api.post(f"/v1/campaigns/{campaign}/stop")
    assert stopped.status_code == 202 and stopped.json()["state"] == "stopped"
    problem(await api.post(f"/v1/campaigns/{campaign}/launch"), 409)
    problem(await api.get("/v1/no-such-thing"), 404)
