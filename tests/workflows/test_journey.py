"""Example journeys run end to end on the time-skipping server with the real activities."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.store.db import SessionFactory
from tests.workflows.support import (
    add_customer,
    morning,
    profile_of,
    publish,
    signal_event,
    start,
)

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


async def test_a_run_started_with_its_profile_enters_with_its_first_write(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    """As the router starts runs: the profile comes with the trigger, so the run calls no
    `journeys.enter`; the send step's activity creates the enrolment with its records."""
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u7")
    profile = await profile_of(sessions, "u7")
    handle = await start(
        client, task_queue, plan, "u7", "card_issued", CARD, key="c-1", profile=profile
    )
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
    assert "journeys.enter" not in (await handle.fetch_history()).to_json()
    (enrolment,) = await _rows(
        sessions,
        "SELECT workflow_id, plan_version, entry_key, holdout, status, end_reason,"
        " entered_at IS NOT NULL, converted_at IS NOT NULL FROM enrolments",
    )
    assert enrolment == (handle.id, plan.version, "c-1", False, "ended", "completed", True, True)
    steps = await _rows(sessions, "SELECT step_id, outcome FROM step_log ORDER BY id")
    assert [step for step, _ in steps] == outcome.path


FIRST_WRITES = """\
apiVersion: cjo/v1
kind: Journey
metadata: {{name: first-writes, businessLine: retail}}
spec:
  form: user
  trigger: {{event: joined}}
  steps:
{steps}
"""


@pytest.mark.parametrize(
    ("steps", "at_first_write"),
    [
        # A wait writes where the user is before it sleeps: that write enters the run.
        ("    - {id: rest, type: wait, duration: 1h}\n    - {id: bye, type: end}", "rest"),
        # Nothing but the end: the run's last write (finish) enters and closes it.
        ("    - {id: bye, type: end}", None),
    ],
    ids=["flush", "finish"],
)
async def test_whichever_write_comes_first_enters_the_run(
    env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    sessions: SessionFactory,
    tmp_path: Path,
    steps: str,
    at_first_write: str | None,
) -> None:
    bundle = tmp_path / "first_writes.yaml"
    bundle.write_text(FIRST_WRITES.format(steps=steps), encoding="utf-8")
    plan = await publish(sessions, str(bundle))
    await add_customer(sessions, "u8")
    profile = await profile_of(sessions, "u8")
    handle = await start(client, task_queue, plan, "u8", "joined", profile=profile)
    if at_first_write is not None:
        await env.sleep(timedelta(minutes=30))
        position = await _rows(sessions, "SELECT status, current_step FROM enrolments")
        assert position == [("active", at_first_write)]
    assert (await handle.result()).end_reason == "completed"
    ended = await _rows(sessions, "SELECT status, end_reason, user_id FROM enrolments")
    assert ended == [("ended", "completed", "u8")]
