"""Example journeys run end to end on the time-skipping server with the real activities."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.store.db import SessionFactory
from tests.workflows.support import add_customer, morning, publish, signal_event, start

CARD = {"tier": "gold", "card_id": "c-1", "card_last4": "4321", "tier_name": "金卡"}


async def _rows(sessions: SessionFactory, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        return [tuple(row) for row in await connection.execute(text(sql), params)]


async def test_card_activation_converts_and_pays_cashback(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u1")
    handle = await start(client, task_queue, plan, "u1", "card_issued", CARD, key="c-1")
    await env.sleep(timedelta(days=1))
    await signal_event(handle, "card_activated", {"card_id": "c-1"})
    outcome = await handle.result()
    assert outcome.path == [
        "risk_check",
        "welcome_sms",
        "await_activation",
        "cashback",
        "cashback_notice",
    ]
    assert outcome.end_reason == "completed"  # the goal counts without exiting
    assert outcome.converted_at is not None
    grants = await _rows(sessions, "SELECT benefit, status FROM grants WHERE user_id = 'u1'")
    assert grants == [("activation-cashback-20", "granted")]
    messages = await _rows(
        sessions,
        "SELECT step_id, channel, status FROM messages WHERE user_id='u1' ORDER BY created_at",
    )
    assert messages == [("welcome_sms", "sms", "pending"), ("cashback_notice", "sms", "pending")]
    (enrolment,) = await _rows(
        sessions, "SELECT status, end_reason, converted_at IS NOT NULL FROM enrolments"
    )
    assert enrolment == ("ended", "completed", True)
    steps = await _rows(sessions, "SELECT step_id, outcome FROM step_log ORDER BY id")
    assert steps == [
        ("risk_check", "pass"),
        ("welcome_sms", "sent"),
        ("await_activation", "event"),
        ("cashback", "granted"),
        ("cashback_notice", "sent"),
    ]


async def test_card_activation_times_out_twice_and_flags_the_customer(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u2")
    handle = await start(client, task_queue, plan, "u2", "card_issued", CARD, key="c-1")
    outcome = await handle.result()
    assert outcome.path == [
        "risk_check",
        "welcome_sms",
        "await_activation",
        "nudge",
        "await_activation_again",
        "not_activated",
    ]
    assert outcome.end_reason == "completed" and outcome.converted_at is None
    (tags,) = await _rows(sessions, "SELECT tags, attrs FROM profiles WHERE id = 'u2'")
    assert "card-not-activated" in tags[0]  # type: ignore[operator]
    assert tags[1] == {"activation_status": "not_activated_after_nudge"}


async def test_an_exit_event_ends_the_run_at_once(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u3")
    handle = await start(client, task_queue, plan, "u3", "card_issued", CARD, key="c-1")
    await env.sleep(timedelta(hours=30))
    await signal_event(handle, "card_cancelled", {"card_id": "other"})  # not this card
    await signal_event(handle, "card_cancelled", {"card_id": "c-1"})
    outcome = await handle.result()
    assert outcome.end_reason == "exited"
    assert outcome.path == ["risk_check", "welcome_sms", "await_activation"]


async def test_a_blocklisted_customer_is_rejected(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u4", phone="13900000009")
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(
            text(
                "INSERT INTO risk_lists (business_line, list, value) "
                "VALUES ('credit-card', 'blocklist', '13900000009')"
            )
        )
    handle = await start(client, task_queue, plan, "u4", "card_issued", CARD, key="c-1")
    outcome = await handle.result()
    assert outcome.end_reason == "rejected"
    assert outcome.path == ["risk_check"]
    assert await _rows(sessions, "SELECT count(*) FROM messages") == [(0,)]


RISK_BY_STEP = """\
apiVersion: cjo/v1
kind: Journey
metadata: {name: risk-by-step, businessLine: retail}
spec:
  form: user
  trigger: {event: applied}
  steps:
    - id: arm
      type: split
      variants:
        - {name: only, weight: 1, next: screen}
        - {name: never, weight: 1, next: screen}
    - id: screen
      type: risk
      policy: by-arm
    - id: hello
      type: update
      tags: {add: [screened]}
---
apiVersion: cjo/v1
kind: RiskPolicy
metadata: {name: by-arm, businessLine: retail}
spec:
  rules:
    - id: listed-arm
      if: {list: arms, key: 'journey.name + "/" + steps.arm.outcome + "/" + trigger.props.ref'}
      then: reject
"""


async def test_a_risk_list_key_sees_earlier_steps_the_journey_and_the_trigger(
    env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    sessions: SessionFactory,
    tmp_path: Path,
) -> None:
    """Every root validation lets a list key use is there when the key is evaluated."""
    bundle = tmp_path / "risk_by_step.yaml"
    bundle.write_text(RISK_BY_STEP, encoding="utf-8")
    plan = await publish(sessions, str(bundle))
    await add_customer(sessions, "u5")
    first = await start(client, task_queue, plan, "u5", "applied", {"ref": "r1"})
    assert (await first.result()).path == ["arm", "screen", "hello"]  # nothing listed yet
    (variant,) = await _rows(sessions, "SELECT outcome FROM step_log WHERE step_id = 'arm'")
    async with sessions() as session, session.begin():
        await (await session.connection()).execute(
            text(
                "INSERT INTO risk_lists (business_line, list, value) VALUES ('retail', 'arms', :v)"
            ),
            {"v": f"risk-by-step/{variant[0]}/r2"},
        )
    # The same customer again (the split is theirs for good), now with a listed key.
    listed = await start(client, task_queue, plan, "u5", "applied", {"ref": "r2"})
    assert (await listed.result()).end_reason == "rejected"
