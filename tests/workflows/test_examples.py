"""The remaining examples end to end on the time-skipping server, days and weeks included.

Covers keyed double runs, re-entry allowed, quiet-hours delay and skip, cap suppression,
branching on attributes, registered call activities, and a cron-scheduled audience.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.activities.runs.models import RoutedEvent
from cjo.activities.runs.routing import RouteEventsInput, RoutingActivities
from cjo.store.db import SessionFactory
from cjo.workflows.campaign import CampaignWorkflow
from tests.workflows.support import add_customer, launch, morning, publish, signal_event, start
from tests.workflows.test_campaign import rows, wait_for_state

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def run_of(sessions: SessionFactory, key: str) -> tuple[object, list[object]]:
    """The end reason and path of the first run keyed `key`, from the database."""
    (run,) = await rows(
        sessions,
        "SELECT run_key, end_reason FROM enrolments WHERE entry_key = :key"
        " ORDER BY entered_at LIMIT 1",
        key=key,
    )
    path = await rows(
        sessions,
        "SELECT step_id FROM step_log WHERE run_key = :run"
        " AND coalesce(outcome, '') <> 'delayed'"
        " AND step_type <> 'expression' ORDER BY id",
        run=run[0],
    )
    return run[1], [row[0] for row in path]


async def test_abandoned_orders_run_per_order_and_may_enter_again(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "abandoned_fund_purchase.yaml")
    await morning(env)
    await add_customer(sessions, "w1", addresses={"push": "tok"})
    campaign_id, campaign_run = await launch(client, task_queue, sessions, plan)
    await wait_for_state(sessions, campaign_id, "running")
    router = RoutingActivities(sessions, client, task_queue)
    now = await env.get_current_time()

    def order(n: int, name: str, order_id: str, **props: object) -> RoutedEvent:
        props = {"order_id": order_id, "amount": 5000, "channel": "app", **props}
        props |= {"fund_name": "示例成长混合", "fund_code": "000001"}
        return RoutedEvent(id=f"o{n}", user_id="w1", name=name, props=props, ts=now)

    started = await router.route_events(
        RouteEventsInput(
            events=[order(1, "fund_order_started", "A"), order(2, "fund_order_started", "B")]
        )
    )
    assert started.started == 2  # one run per order: a keyed double run
    await env.sleep(timedelta(minutes=30))
    await router.route_events(RouteEventsInput(events=[order(3, "fund_order_paid", "A")]))
    # Handles the router started are not ours to await on the time-skipping server
    # (only start_workflow's handles unlock time skipping): let the 3-day goal window pass.
    await env.sleep(timedelta(days=4))
    assert await run_of(sessions, "A") == ("converted", ["await_payment"])
    assert await run_of(sessions, "B") == (
        "completed",
        ["await_payment", "remind", "await_payment_after_reminder", "lapse_notice"],
    )
    # reentry: always — the same order may start the journey again once its run ended.
    again = await router.route_events(
        RouteEventsInput(events=[order(4, "fund_order_started", "A")])
    )
    assert again.started == 1 and again.refused == {}
    for _ in range(200):  # the new run records its entry as it starts
        entries = await rows(sessions, "SELECT count(*) FROM enrolments WHERE entry_key = 'A'")
        if entries == [(2,)]:
            break
        await asyncio.sleep(0.05)
    assert entries == [(2,)]
    await campaign_run.signal(CampaignWorkflow.stop)
    await campaign_run.result()


async def test_quiet_hours_delay_a_marketing_push_until_morning(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env, "22:00")
    await add_customer(sessions, "q1", addresses={"push": "tok"})
    card = {"tier": "gold", "card_id": "c-9", "card_last4": "9999", "tier_name": "金卡"}
    handle = await start(client, task_queue, plan, "q1", "card_issued", card, key="c-9")
    await handle.result()
    (nudge,) = await rows(
        # not_before is the workflow's moment of the send (created_at is the database's clock)
        sessions,
        "SELECT not_before FROM messages WHERE step_id = 'nudge' AND user_id = 'q1'",
    )
    sent_at = nudge[0].astimezone(SHANGHAI)  # type: ignore[attr-defined]
    assert (sent_at.hour, sent_at.minute) == (8, 30)  # the window closes at 08:30 local
    delayed = await rows(
        sessions, "SELECT outcome FROM step_log WHERE step_id = 'nudge' ORDER BY id"
    )
    assert delayed == [("delayed",), ("sent",)]


async def test_a_frequency_cap_suppresses_the_fallback_sms(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "card_activation.yaml")
    await morning(env)
    await add_customer(sessions, "f1")  # no push address: the nudge falls back to SMS
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(
            text(
                "INSERT INTO contact_log (user_id, business_line, journey, channel, message_id, at)"
                " SELECT 'f1', 'credit-card', 'statement', 'sms', 'm' || n, now()"
                " FROM generate_series(1, 3) n"
            )
        )
    card = {"tier": "gold", "card_id": "c-1", "card_last4": "1111", "tier_name": "金卡"}
    handle = await start(client, task_queue, plan, "f1", "card_issued", card, key="c-1")
    await handle.result()
    nudge = await rows(
        sessions, "SELECT status, reason, channel FROM messages WHERE step_id = 'nudge'"
    )
    assert nudge == [("suppressed", "frequency_cap", "sms")]


async def test_wealth_funnel_branches_on_assets(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "wealth_funnel.yaml")
    await morning(env)
    await add_customer(sessions, "rich", attrs={"aum": 800_000})
    await add_customer(sessions, "modest", attrs={"aum": 20_000})
    viewed = {
        "product_type": "fund",
        "view_seconds": 40,
        "product_name": "稳健理财30天",
        "product_code": "WM030",
        "yield_7d": "2.41%",
    }
    rich = await start(client, task_queue, plan, "rich", "wealth_product_viewed", viewed)
    modest = await start(client, task_queue, plan, "modest", "wealth_product_viewed", viewed)
    await env.sleep(timedelta(days=4))
    await signal_event(rich, "fund_purchase", {"amount": 50_000})
    rich_outcome, modest_outcome = await rich.result(), await modest.result()
    assert rich_outcome.path[:3] == ["cool_off", "route_by_value", "rm_email"]
    assert rich_outcome.end_reason == "converted"
    assert modest_outcome.path[:3] == ["cool_off", "route_by_value", "inbox_intro"]
    assert modest_outcome.end_reason == "completed"
    assert modest_outcome.path[-1] == "tag_warm_lead"


async def test_mobile_onboarding_runs_for_weeks_and_calls_an_activity(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "mobile_onboarding.yaml")
    await morning(env)
    await add_customer(sessions, "m1", attrs={"features_used": 9}, addresses={"push": "tok"})
    began = await env.get_current_time()
    handle = await start(client, task_queue, plan, "m1", "app_registered", {"platform": "ios"})
    outcome = await handle.result()
    assert outcome.end_reason == "completed"
    assert "pick_track" in outcome.path and "tips_push" in outcome.path  # 9 features: advanced
    assert outcome.path[-1] == "finish"
    finished = await env.get_current_time()
    assert finished - began > timedelta(days=21)  # weeks of durable waits, in seconds
    (profile,) = await rows(sessions, "SELECT attrs, tags FROM profiles WHERE id = 'm1'")
    attrs, tags = profile
    assert attrs["onboarding_stage"] == "done"  # type: ignore[index]
    assert attrs["onboarding_track"] == "advanced"  # type: ignore[index]
    assert "onboarded" in tags and "onboarding" not in tags  # type: ignore[operator]


async def test_birthday_campaign_fires_on_its_cron(
    env: WorkflowEnvironment, client: Client, task_queue: str, sessions: SessionFactory
) -> None:
    plan = await publish(sessions, "birthday_benefit.yaml")
    now = (await env.get_current_time()).astimezone(SHANGHAI)
    tomorrow = (now + timedelta(days=1)).date()
    member = {"lifecycle": "growing", "attrs": {"aum": 5000}}
    await add_customer(sessions, "bday", birthday=tomorrow.replace(year=1990).isoformat(), **member)
    await add_customer(
        sessions, "other", birthday=(tomorrow + timedelta(days=40)).replace(year=1990).isoformat()
    )
    campaign_id, handle = await launch(client, task_queue, sessions, plan)
    nine = datetime.combine(tomorrow, datetime.min.time(), tzinfo=SHANGHAI).replace(hour=9)
    await env.sleep(nine - now + timedelta(minutes=5))
    for _ in range(200):
        entered = await rows(sessions, "SELECT user_id, entered_at FROM enrolments")
        if entered:
            break
        await asyncio.sleep(0.05)
    assert [row[0] for row in entered] == ["bday"]
    entered_at = entered[0][1].astimezone(SHANGHAI)  # type: ignore[attr-defined]
    assert (entered_at.date(), entered_at.hour) == (tomorrow, 9)
    await handle.signal(CampaignWorkflow.stop)
    assert (await handle.result()).state == "stopped"
    (grant,) = await rows(sessions, "SELECT user_id, benefit FROM grants")
    assert grant == ("bday", "birthday-points-888")
