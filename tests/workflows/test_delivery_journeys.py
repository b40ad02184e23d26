"""Delivery feedback steering journeys, end to end on the time-skipping server.

- push first, and an SMS only if the push is not opened within the hour;
- a send's fallback channel when the first cannot reach the customer;
- an opt-out SMS reply, through the API, stopping later marketing SMS of a running
  journey while its service SMS still goes.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.activities.calls.catalog import default_registry
from cjo.activities.runs.routing import RoutingActivities
from cjo.api import create_app
from cjo.control.resources import ResourceActivities
from cjo.delivery.feedback import DeliveryFeedback, DeliveryReport, RecordReportsInput
from cjo.delivery.signing import signed_headers
from cjo.dsl import Plan
from cjo.runtime.settings import ProviderSettings, Settings
from cjo.store.db import SessionFactory
from cjo.store.schema import Message
from tests.delivery.message_rows import message, store
from tests.workflows.support import add_customer, morning, publish, start

BUNDLES = Path(__file__).parent / "bundles"
SALARY = {"amount": 8000}


async def messages(sessions: SessionFactory, user_id: str) -> dict[str, Message]:
    """The user's messages by step id."""
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            text("SELECT * FROM messages WHERE user_id = :user"), {"user": user_id}
        )
        return {row.step_id: Message.model_validate(row._asdict()) for row in rows}


async def step_done_at(sessions: SessionFactory, user_id: str, step_id: str) -> datetime:
    """When (workflow time) the user's run recorded the step's outcome."""
    async with sessions() as session:
        connection = await session.connection()
        at: datetime = (
            await connection.execute(
                text("SELECT at FROM step_log WHERE user_id = :user AND step_id = :step"),
                {"user": user_id, "step": step_id},
            )
        ).scalar_one()
    return at


async def message_of(sessions: SessionFactory, user_id: str, step_id: str) -> Message:
    """The message `step_id` sent, once the run has got that far (real time, no skipping)."""
    for _ in range(400):
        found = (await messages(sessions, user_id)).get(step_id)
        if found is not None:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"{user_id} never got to {step_id}")


async def test_an_opened_push_needs_no_sms(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "push_then_sms.yaml")
    await morning(env)
    await add_customer(sessions, "p1", addresses={"push": "device-token"})
    began = await env.get_current_time()
    handle = await start(client, task_queue, plan, "p1", "salary_credited", SALARY)
    push = await message_of(sessions, "p1", "push_offer")
    assert push.channel == "push" and push.links == ["https://bank.example/wealth/wm030?from=push"]
    # What POST /v1/channels/push/receipts does with the provider's "opened".
    feedback = DeliveryFeedback(sessions, RoutingActivities(sessions, client, task_queue))
    opened = DeliveryReport(message_id=push.id, status="opened", at=began)
    recorded = await feedback.record(RecordReportsInput(reports=[opened]))
    assert recorded.events == 1
    outcome = await handle.result()
    assert outcome.path == ["push_offer", "await_open"]
    assert outcome.end_reason == "completed"
    assert set(await messages(sessions, "p1")) == {"push_offer"}  # no SMS
    # The wait ended at the open, not at its timeout.
    assert push.not_before is not None
    waited = await step_done_at(sessions, "p1", "await_open") - push.not_before
    assert waited < timedelta(minutes=1)


async def test_an_unopened_push_is_followed_by_sms_an_hour_later(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "push_then_sms.yaml")
    await morning(env)
    await add_customer(sessions, "p2", addresses={"push": "device-token"})
    handle = await start(client, task_queue, plan, "p2", "salary_credited", SALARY)
    push = await message_of(sessions, "p2", "push_offer")
    # Last month's push of the same step, opened only now, is not this run's push.
    await store(sessions, message("last-month", user_id="p2", workflow_id=push.workflow_id))
    feedback = DeliveryFeedback(sessions, RoutingActivities(sessions, client, task_queue))
    late = DeliveryReport(message_id="last-month", status="opened", at=push.not_before)
    assert (await feedback.record(RecordReportsInput(reports=[late]))).events == 1
    outcome = await handle.result()
    assert outcome.path == ["push_offer", "await_open", "sms_offer"]
    sent = await messages(sessions, "p2")
    sms = sent["sms_offer"]
    assert sms.channel == "sms" and sms.status != "suppressed"
    assert sms.not_before is not None and push.not_before is not None
    waited = sms.not_before - push.not_before
    assert timedelta(hours=1) <= waited < timedelta(hours=1, minutes=1)
    assert "拒收请回复R" in (sms.body or "") and sms.links == [
        "https://bank.example/wealth/wm030?from=sms"
    ]


async def test_a_customer_push_cannot_reach_gets_the_sms_at_once(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "push_then_sms.yaml")
    await morning(env)
    await add_customer(sessions, "p3")  # no push token
    outcome = await (
        await start(client, task_queue, plan, "p3", "salary_credited", SALARY)
    ).result()
    assert outcome.path == ["push_offer", "sms_offer"]
    sent = await messages(sessions, "p3")
    assert (sent["push_offer"].status, sent["push_offer"].reason) == ("suppressed", "no_address")
    assert sent["sms_offer"].status != "suppressed"
    push, sms = sent["push_offer"].not_before, sent["sms_offer"].not_before
    assert push is not None and sms is not None
    assert sms - push < timedelta(minutes=1)  # no hour's wait for an open that cannot come


async def test_a_send_falls_back_to_its_next_channel_end_to_end(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    """card_activation's nudge is a push with an SMS fallback; this customer has no push."""
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "fb1")
    card = {"tier": "gold", "card_id": "c-7", "card_last4": "7777", "tier_name": "金卡"}
    handle = await start(client, task_queue, plan, "fb1", "card_issued", card, key="c-7")
    outcome = await handle.result()
    assert "nudge" in outcome.path
    nudge = (await messages(sessions, "fb1"))["nudge"]
    assert (nudge.channel, nudge.template) == ("sms", "card-activation-nudge-sms")
    assert nudge.status != "suppressed" and nudge.address == "13800000001"
    async with sessions() as session:
        connection = await session.connection()
        detail = (
            await connection.execute(
                text("SELECT detail FROM step_log WHERE step_id = 'nudge' AND outcome = 'sent'")
            )
        ).scalar_one()
    assert detail["fallback_used"] is True and detail["channel"] == "sms"


SMS_SECRET = "sms-provider-secret"


async def publish_bundle(sessions: SessionFactory, name: str) -> Plan:
    resources = ResourceActivities(sessions, default_registry())
    outcome = await resources.apply((BUNDLES / name).read_text(encoding="utf-8"))
    assert outcome.valid, [d.format_text() for d in outcome.diagnostics]
    journey = next(a for a in outcome.applied if a.kind == "Journey")
    plan = await resources.journey_plan(journey.business_line, journey.name)
    assert plan is not None
    return plan


async def test_an_opt_out_reply_stops_later_marketing_sms_but_not_service_sms(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish_bundle(sessions, "opt_out.yaml")
    await morning(env)
    await add_customer(sessions, "o1", phone="13800000077")
    handle = await start(client, task_queue, plan, "o1", "statement_ready")
    first = await message_of(sessions, "o1", "first_offer")
    assert first.status != "suppressed"
    # During the day's wait the customer answers the offer with "TD", through the API.
    sms = ProviderSettings(kind="http", url="http://127.0.0.1:9/sms", secret=SecretStr(SMS_SECRET))
    app = create_app(
        sessions=sessions,
        temporal=client,
        task_queue=task_queue,
        settings=Settings(providers={"*": {"sms": sms}}),
    )
    body = json.dumps({"replies": [{"from": "+8613800000077", "text": "TD", "id": "up-1"}]})
    headers = signed_headers(SMS_SECRET, int(time.time()), body.encode())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cjo.test") as http:
        answer = await http.post(
            "/v1/channels/sms/replies",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["revoked"] == 1
    outcome = await handle.result()
    assert outcome.path == ["first_offer", "pause", "statement", "second_offer"]
    sent = await messages(sessions, "o1")
    assert sent["statement"].status != "suppressed"  # service: no consent needed
    assert sent["statement"].marketing is False
    assert (sent["second_offer"].status, sent["second_offer"].reason) == (
        "suppressed",
        "no_consent",
    )
    async with sessions() as session:
        connection = await session.connection()
        consent = (
            await connection.execute(
                text(
                    "SELECT granted, source FROM consents WHERE user_id = 'o1' AND channel = 'sms'"
                )
            )
        ).one()
    assert tuple(consent) == (False, "sms_reply")
