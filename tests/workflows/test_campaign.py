"""Campaigns: audience enrolment on a schedule, event-triggered entry and routing, life cycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.activities.runs.models import RoutedEvent
from cjo.activities.runs.routing import RouteEventsInput, RoutingActivities
from cjo.store.db import SessionFactory
from cjo.workflows.campaign import CampaignWorkflow
from tests.workflows.support import add_customer, launch, morning, publish

SAVER = {
    "lifecycle": "dormant",
    "tags": ["payroll"],
    "attrs": {"aum": 80000},
    "addresses": {"push": "push-token"},
}


async def rows(sessions: SessionFactory, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        return [tuple(row) for row in await connection.execute(text(sql), params)]


async def wait_for_state(sessions: SessionFactory, campaign_id: str, state: str) -> None:
    for _ in range(200):
        found = await rows(sessions, "SELECT state FROM campaigns WHERE id = :id", id=campaign_id)
        if found and found[0][0] == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign never became {state}")


async def test_audience_campaign_enrols_the_segment_at_its_time(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "dormant_savers.yaml")
    members = [f"saver-{n:02d}" for n in range(30)]
    for user in members:
        await add_customer(sessions, user, **SAVER)
    await add_customer(sessions, "active-saver", **{**SAVER, "lifecycle": "mature"})
    await add_customer(sessions, "small-saver", **{**SAVER, "attrs": {"aum": 100}})
    campaign_id, handle = await launch(
        client, task_queue, sessions, plan, page_size=7, rate_per_second=7
    )
    status = await handle.result()
    assert status.state == "completed" and status.enrolled == len(members)
    enrolled = await rows(
        sessions,
        "SELECT user_id, holdout, status, end_reason, entered_at FROM enrolments ORDER BY user_id",
    )
    assert [row[0] for row in enrolled] == members  # the segment, not the others
    assert {row[2] for row in enrolled} == {"ended"}
    scheduled = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert all(row[4] >= scheduled for row in enrolled)  # type: ignore[operator]
    held_out = [row[0] for row in enrolled if row[1]]
    assert 0 < len(held_out) < len(members)  # 10% holdout, stable per user
    logged = {row[0] for row in await rows(sessions, "SELECT DISTINCT user_id FROM step_log")}
    assert logged == set(members) - set(held_out)  # a holdout entrant runs no step
    variants = await rows(
        sessions, "SELECT DISTINCT variant FROM enrolments WHERE NOT holdout ORDER BY 1"
    )
    assert variants == [("care_led",), ("rate_led",)]
    (state,) = await rows(sessions, "SELECT state FROM campaigns WHERE id = :id", id=campaign_id)
    assert state == ("completed",)


async def test_event_campaign_enters_routes_and_stops(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "u1")
    await add_customer(sessions, "u2")
    campaign_id, handle = await launch(client, task_queue, sessions, plan)
    await wait_for_state(sessions, campaign_id, "running")
    router = RoutingActivities(sessions, client, task_queue)
    now = await env.get_current_time()

    def event(n: int, user: str, name: str, **props: object) -> RoutedEvent:
        return RoutedEvent(id=f"e{n}", user_id=user, name=name, props=props, ts=now)

    card = {"tier": "gold", "card_id": "c-1", "card_last4": "1234", "tier_name": "金卡"}
    first = await router.route_events(
        RouteEventsInput(
            events=[
                event(1, "u1", "card_issued", **card),
                event(2, "u2", "card_issued", **{**card, "tier": "basic"}),  # where: no
                event(3, "ghost", "card_issued", **card),  # no profile
            ]
        )
    )
    assert first.started == 1 and first.refused == {"where": 1, "unknown_user": 1}
    again = await router.route_events(
        RouteEventsInput(events=[event(4, "u1", "card_issued", **card)])
    )
    assert again.started == 1  # the same run, signalled: never a second one
    journey = client.get_workflow_handle("journey/credit-card/card-activation/u1/c-1")
    await env.sleep(timedelta(hours=2))
    routed = await router.route_events(
        RouteEventsInput(events=[event(5, "u1", "card_activated", card_id="c-1")])
    )
    assert routed.signalled == 1
    outcome = await journey.result()
    assert outcome["end_reason"] == "completed" and outcome["converted_at"] is not None
    assert "cashback" in outcome["path"]
    # Re-entry is `never`: the same card cannot start the journey again.
    refused = await router.route_events(
        RouteEventsInput(events=[event(6, "u1", "card_issued", **card)])
    )
    assert refused.refused == {"reentry": 1}
    await handle.signal(CampaignWorkflow.stop)
    status = await handle.result()
    assert status.state == "stopped"
    (state,) = await rows(sessions, "SELECT state FROM campaigns WHERE id = :id", id=campaign_id)
    assert state == ("stopped",)


PAUSE_BUNDLE = """\
apiVersion: cjo/v1
kind: ContactPolicy
metadata: {name: default, businessLine: ops}
spec: {quietHours: null, frequency: []}
---
apiVersion: cjo/v1
kind: Journey
metadata: {name: hold-test, businessLine: ops}
spec:
  form: activity
  trigger: {segment: everyone}
  steps:
    - {id: later, type: wait, duration: 1h}
    - {id: hello, type: send, channel: inbox, template: hello}
---
apiVersion: cjo/v1
kind: Segment
metadata: {name: everyone, businessLine: ops}
spec: {match: {attr: aum, exists: true}}
---
apiVersion: cjo/v1
kind: Template
metadata: {name: hello, businessLine: ops}
spec:
  channel: inbox
  content: {en: {body: "Hello {{ user.name }}"}}
"""


async def test_a_paused_campaign_sends_nothing_until_resumed(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    from cjo.activities.calls.catalog import default_registry
    from cjo.control.resources import ResourceActivities

    resources = ResourceActivities(sessions, default_registry())
    assert (await resources.apply(PAUSE_BUNDLE)).valid
    plan = await resources.journey_plan("ops", "hold-test")
    assert plan is not None
    users = [f"p{n}" for n in range(8)]
    for user in users:
        await add_customer(sessions, user, attrs={"aum": 1})
    campaign_id, handle = await launch(client, task_queue, sessions, plan)
    for _ in range(200):  # everyone entered and waiting in `later`
        waiting = await rows(
            sessions, "SELECT count(*) FROM enrolments WHERE current_step = 'later'"
        )
        if waiting == [(len(users),)]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the audience was not entered")
    await handle.signal(CampaignWorkflow.pause)
    await wait_for_state(sessions, campaign_id, "paused")
    await env.sleep(timedelta(hours=3))
    assert await rows(sessions, "SELECT count(*) FROM messages") == [(0,)]
    held = await rows(sessions, "SELECT count(*) FROM enrolments WHERE status = 'held'")
    assert held == [(len(users),)]
    await handle.signal(CampaignWorkflow.resume)
    status = await handle.result()
    assert status.state == "completed"
    assert await rows(sessions, "SELECT count(*) FROM messages") == [(len(users),)]
    ended = await rows(sessions, "SELECT end_reason, count(*) FROM enrolments GROUP BY 1")
    assert ended == [("completed", len(users))]
