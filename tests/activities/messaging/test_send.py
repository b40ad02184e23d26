"""messaging.send against a real PostgreSQL: reachability, quiet hours, caps, rendering, keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from cjo.activities.messaging.send import MessagingActivities
from cjo.dsl import TemplateSpec
from cjo.dsl.plan import PlanContactPolicy, PlanFrequency, PlanLimits, PlanQuietHours
from cjo.steps.contracts import (
    FallbackOption,
    SendDecision,
    SendMessageInput,
    SendRequest,
    TemplateRef,
)
from cjo.store.db import SessionFactory
from cjo.store.schema import Consent, ContactLog, Message, Profile

# 12:00 in Shanghai, 04:00 in London: outside the usual quiet hours only in Shanghai.
NOON_IN_SHANGHAI = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
# 23:30 in Shanghai, 15:30 in London (GMT in January).
LATE_IN_SHANGHAI = datetime(2026, 1, 15, 15, 30, tzinfo=UTC)
WEEK = 7 * 86400
NIGHT = PlanQuietHours(start="21:00", end="08:00", action="delay")


def template(name: str, channel: str, content: dict[str, Any]) -> TemplateRef:
    spec = TemplateSpec.model_validate({"channel": channel, "content": content})
    return TemplateRef(name=name, version=f"{name}-v1", spec=spec)


SMS = template(
    "card-welcome",
    "sms",
    {
        "zh-CN": {"body": "【示例银行】{{ user.name }}您好，您的卡已寄出。拒收请回复R"},
        "en": {"body": "Hi {{ user.name }}, your card is on its way. Reply STOP to opt out"},
    },
)
EMAIL = template(
    "card-welcome-email",
    "email",
    {"en": {"subject": "Card for {{ user.name }}", "body": "Hi", "html": "<p>Hi</p>"}},
)
PUSH = template("card-push", "push", {"en": {"body": "Your card ships today"}})
INBOX = template("card-inbox", "inbox", {"en": {"body": "Your card ships today"}})


def policy(**changes: Any) -> PlanContactPolicy:
    base: dict[str, Any] = {
        "version": None,
        "timezone": "Asia/Shanghai",
        "quiet_hours": None,
        "frequency": [],
        "consent": {"sms": "required", "email": "required", "push": "required", "inbox": "implied"},
        "opt_out_pattern": "退订|拒收|回复R|STOP|unsubscribe",
    }
    return PlanContactPolicy.model_validate(base | changes)


def request(key: str, **changes: Any) -> SendRequest:
    base: dict[str, Any] = {
        "key": key,
        "business_line": "credit-card",
        "journey": "card-activation",
        "journey_version": "j1",
        "workflow_id": f"journey/credit-card/card-activation/{changes.get('user_id', 'u1')}",
        "step_id": "welcome",
        "user_id": "u1",
        "at": NOON_IN_SHANGHAI,
        "channel": "sms",
        "template": SMS,
        "policy": policy(),
    }
    return SendRequest.model_validate(base | changes)


def cap(channel: str, most: int, per_seconds: int = WEEK) -> PlanFrequency:
    return PlanFrequency(channel=channel, max=most, per_seconds=per_seconds)


async def add_user(
    sessions: SessionFactory,
    user_id: str = "u1",
    *,
    consents: dict[str, bool] | None = None,
    **fields: Any,
) -> None:
    profile: dict[str, Any] = {
        "name": "Li Lei",
        "phone": "+8613800000000",
        "email": "li@example.com",
        "timezone": "Asia/Shanghai",
    }
    rows: list[SQLModel] = [Profile(id=user_id, **(profile | fields))]
    granted = {"sms": True, "email": True, "push": True} if consents is None else consents
    rows += [
        Consent(user_id=user_id, channel=channel, granted=value, source="test")
        for channel, value in granted.items()
    ]
    async with sessions() as session, session.begin():
        session.add_all(rows[:1])
        await session.flush()
        session.add_all(rows[1:])


async def send(sessions: SessionFactory, *requests: SendRequest) -> list[SendDecision]:
    result = await MessagingActivities(sessions).send(SendMessageInput(requests=list(requests)))
    return result.results


async def send_each_concurrently(
    sessions: SessionFactory, requests: list[SendRequest]
) -> list[SendDecision]:
    """Each request as its own activity call, all at once: as separate workflows would."""
    batches = await asyncio.gather(*(send(sessions, r) for r in requests))
    return [decision for batch in batches for decision in batch]


async def count(sessions: SessionFactory, table: type[SQLModel], *where: Any) -> int:
    async with sessions() as session:
        statement = select(func.count()).select_from(table).where(*where)
        return (await session.exec(statement)).one()


async def message(sessions: SessionFactory, key: str) -> Message:
    async with sessions() as session:
        return (await session.exec(select(Message).where(Message.key == key))).one()


def outcomes(decisions: list[SendDecision]) -> list[tuple[str, str | None]]:
    return [(d.outcome, d.reason) for d in decisions]


async def assert_two_sent_the_rest_capped(
    sessions: SessionFactory, decisions: list[SendDecision]
) -> None:
    assert outcomes(decisions).count(("sent", None)) == 2
    assert outcomes(decisions).count(("suppressed", "frequency_cap")) == len(decisions) - 2
    assert await count(sessions, ContactLog) == 2


# Frequency caps


async def test_fifty_concurrent_sends_of_one_journey_stop_at_its_cap(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions)
    limits = PlanLimits(frequency=[cap("sms", 2)])
    requests = [request(f"k{i}", limits=limits) for i in range(50)]

    decisions = await send_each_concurrently(sessions, requests)

    await assert_two_sent_the_rest_capped(sessions, decisions)
    assert await count(sessions, Message, col(Message.status) == "pending") == 2
    assert await count(sessions, Message, col(Message.status) == "suppressed") == 48


async def test_fifty_concurrent_sends_of_many_journeys_stop_at_the_business_line_cap(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions)
    line_policy = policy(frequency=[cap("sms", 2)])
    requests = [request(f"k{i}", journey=f"journey-{i % 5}", policy=line_policy) for i in range(50)]

    decisions = await send_each_concurrently(sessions, requests)

    await assert_two_sent_the_rest_capped(sessions, decisions)


async def test_fifty_concurrent_sends_on_many_channels_stop_at_an_any_cap(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions, addresses={"push": "device-token-1"})
    line_policy = policy(frequency=[cap("any", 2), cap("sms", 10)])
    channels = [("sms", SMS), ("email", EMAIL), ("push", PUSH)]
    requests = [
        request(
            f"k{i}",
            journey=f"journey-{i % 3}",
            channel=channels[i % 3][0],
            template=channels[i % 3][1],
            policy=line_policy,
        )
        for i in range(50)
    ]

    decisions = await send_each_concurrently(sessions, requests)

    await assert_two_sent_the_rest_capped(sessions, decisions)


async def test_journey_caps_count_their_own_journey_and_line_caps_count_all(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions)
    line_policy = policy(frequency=[cap("sms", 3)])
    limits = PlanLimits(frequency=[cap("sms", 2)])

    def step(key: str, journey: str, **changes: Any) -> SendRequest:
        return request(key, journey=journey, limits=limits, policy=line_policy, **changes)

    decisions = await send(
        sessions,
        step("a1", "journey-a"),
        step("a2", "journey-a"),
        step("a3", "journey-a"),  # journey-a's own cap of 2
        step("b1", "journey-b"),  # journey-b has sent nothing yet; the line's 3rd sms
        step("b2", "journey-b"),  # the line's cap of 3
        step("b3", "journey-b", channel="email", template=EMAIL),  # sms caps leave email alone
    )

    assert outcomes(decisions) == [
        ("sent", None),
        ("sent", None),
        ("suppressed", "frequency_cap"),
        ("sent", None),
        ("suppressed", "frequency_cap"),
        ("sent", None),
    ]
    # Once the window has passed, earlier contacts no longer count.
    later = NOON_IN_SHANGHAI + timedelta(seconds=WEEK + 1)
    assert outcomes(await send(sessions, step("a4", "journey-a", at=later))) == [("sent", None)]


async def test_service_messages_skip_caps_and_are_not_counted(sessions: SessionFactory) -> None:
    await add_user(sessions)
    line_policy = policy(frequency=[cap("any", 1)])

    decisions = await send(
        sessions,
        *(request(f"s{i}", marketing=False, policy=line_policy) for i in range(3)),
        request("m1", policy=line_policy),
        request("m2", policy=line_policy),
    )

    assert outcomes(decisions) == [("sent", None)] * 4 + [("suppressed", "frequency_cap")]
    assert await count(sessions, ContactLog) == 1


async def test_a_page_split_over_transactions_still_holds_one_users_cap(
    sessions: SessionFactory,
) -> None:
    async with sessions() as session, session.begin():
        session.add_all(Profile(id=f"u{i}", phone=f"+86138{i:08d}") for i in range(600))
        await session.flush()
        session.add_all(
            Consent(user_id=f"u{i}", channel="sms", granted=True, source="t") for i in range(600)
        )
    limits = PlanLimits(frequency=[cap("sms", 2)])
    # u0 appears on both sides of the 500-request transaction boundary.
    users = [f"u{i}" for i in range(600)]
    users[499] = users[500] = users[599] = "u0"
    requests = [request(f"k{i}", user_id=user, limits=limits) for i, user in enumerate(users)]

    decisions = await send(sessions, *requests)

    assert [d.key for d in decisions] == [f"k{i}" for i in range(600)]
    hot = [d for d, user in zip(decisions, users, strict=True) if user == "u0"]
    assert outcomes(hot) == [("sent", None), ("sent", None)] + [("suppressed", "frequency_cap")] * 2
    assert outcomes(decisions).count(("sent", None)) == 596 + 2
    assert await count(sessions, ContactLog, col(ContactLog.user_id) == "u0") == 2


# Quiet hours


async def test_quiet_hours_delay_until_the_window_opens_in_the_users_time_zone(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions, "shanghai", timezone="Asia/Shanghai")
    await add_user(sessions, "london", timezone="Europe/London")
    limits = PlanLimits(quiet_hours=NIGHT)

    decisions = await send(
        sessions,
        request("k-shanghai", user_id="shanghai", at=LATE_IN_SHANGHAI, limits=limits),
        request("k-london", user_id="london", at=LATE_IN_SHANGHAI, limits=limits),
    )

    # 08:00 the next morning in Shanghai is midnight UTC.
    assert decisions[0].outcome == "delay"
    assert decisions[0].until == datetime(2026, 1, 16, 0, 0, tzinfo=UTC)
    assert decisions[1].outcome == "sent"
    # A delay writes nothing; asking again once the window opens sends.
    assert await count(sessions, Message, col(Message.user_id) == "shanghai") == 0
    again = await send(
        sessions,
        request("k-shanghai", user_id="shanghai", at=decisions[0].until, limits=limits),
    )
    assert outcomes(again) == [("sent", None)]


async def test_quiet_hours_before_dawn_open_the_same_morning(sessions: SessionFactory) -> None:
    await add_user(sessions)
    three_am_in_shanghai = datetime(2026, 1, 15, 19, 0, tzinfo=UTC)

    decisions = await send(
        sessions, request("k1", at=three_am_in_shanghai, limits=PlanLimits(quiet_hours=NIGHT))
    )

    assert decisions[0].until == datetime(2026, 1, 16, 0, 0, tzinfo=UTC)


async def test_quiet_hours_with_skip_suppress(sessions: SessionFactory) -> None:
    await add_user(sessions)
    skip = PlanQuietHours(start="21:00", end="08:00", action="skip")

    decisions = await send(
        sessions, request("k1", at=LATE_IN_SHANGHAI, limits=PlanLimits(quiet_hours=skip))
    )

    assert outcomes(decisions) == [("suppressed", "quiet_hours")]
    assert (await message(sessions, "k1")).status == "suppressed"
    assert await count(sessions, ContactLog) == 0


async def test_a_user_without_a_time_zone_follows_the_policys(sessions: SessionFactory) -> None:
    await add_user(sessions, timezone=None)

    decisions = await send(
        sessions,
        request("k-cn", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=NIGHT)),
        request(
            "k-uk", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=NIGHT, timezone="Europe/London")
        ),
    )

    assert [d.outcome for d in decisions] == ["delay", "sent"]


async def test_the_journeys_quiet_hours_tighten_the_policys(sessions: SessionFactory) -> None:
    """Journey limits tighten, never loosen: both windows apply, and `skip` in either wins."""
    await add_user(sessions)
    evening = PlanLimits(quiet_hours=PlanQuietHours(start="18:00", end="20:00", action="skip"))
    all_night = PlanLimits(quiet_hours=PlanQuietHours(start="22:00", end="09:00", action="skip"))

    decisions = await send(
        sessions,
        request("k-policy", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=NIGHT)),
        request("k-evening", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=NIGHT), limits=evening),
        request("k-night", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=NIGHT), limits=all_night),
        request(
            "k-journey-only", at=LATE_IN_SHANGHAI, policy=policy(quiet_hours=None), limits=all_night
        ),
    )

    assert outcomes(decisions) == [
        ("delay", None),  # the policy's night window delays
        ("delay", None),  # the journey's evening window does not lift the policy's night
        ("suppressed", "quiet_hours"),  # the journey's own night window skips
        ("suppressed", "quiet_hours"),
    ]


async def test_service_messages_ignore_quiet_hours(sessions: SessionFactory) -> None:
    await add_user(sessions)

    decisions = await send(
        sessions,
        request("k1", at=LATE_IN_SHANGHAI, marketing=False, policy=policy(quiet_hours=NIGHT)),
    )

    assert outcomes(decisions) == [("sent", None)]


# Reachability


async def test_consent_modes(sessions: SessionFactory) -> None:
    await add_user(sessions, "none", consents={})
    await add_user(sessions, "granted", consents={"sms": True, "inbox": True})
    await add_user(sessions, "revoked", consents={"sms": False, "inbox": False})
    implied_sms = policy(consent={"sms": "implied"})

    decisions = await send(
        sessions,
        request("required-none", user_id="none"),
        request("required-granted", user_id="granted"),
        request("required-revoked", user_id="revoked"),
        request("implied-none", user_id="none", policy=implied_sms),
        request("implied-revoked", user_id="revoked", policy=implied_sms),
        request("inbox-none", user_id="none", channel="inbox", template=INBOX),
        request("inbox-revoked", user_id="revoked", channel="inbox", template=INBOX),
    )

    assert outcomes(decisions) == [
        ("suppressed", "no_consent"),
        ("sent", None),
        ("suppressed", "no_consent"),
        ("sent", None),
        ("suppressed", "no_consent"),
        ("sent", None),
        ("suppressed", "no_consent"),
    ]
    inbox = await message(sessions, "inbox-none")
    assert (inbox.channel, inbox.address) == ("inbox", None)


async def test_a_channel_the_policy_does_not_name_needs_consent(sessions: SessionFactory) -> None:
    await add_user(sessions, "hooked", consents={}, addresses={"webhook": "https://h.example"})
    await add_user(
        sessions, "agreed", consents={"webhook": True}, addresses={"webhook": "https://a"}
    )
    hook = template("hook", "webhook", {"en": {"body": "{}"}})

    decisions = await send(
        sessions,
        request("k1", user_id="hooked", channel="webhook", template=hook),
        request("k2", user_id="agreed", channel="webhook", template=hook),
    )

    assert outcomes(decisions) == [("suppressed", "no_consent"), ("sent", None)]
    assert (await message(sessions, "k2")).address == "https://a"


async def test_missing_addresses(sessions: SessionFactory) -> None:
    await add_user(sessions, phone=None, addresses={})

    decisions = await send(
        sessions,
        request("sms", marketing=False),
        request("push", channel="push", template=PUSH),
        request("unknown", user_id="nobody"),
    )

    assert outcomes(decisions) == [
        ("suppressed", "no_address"),
        ("suppressed", "no_address"),
        ("suppressed", "unknown_user"),
    ]


async def test_fallback_to_the_next_reachable_channel(sessions: SessionFactory) -> None:
    await add_user(sessions, consents={"email": True}, addresses={})
    fallback = [
        FallbackOption(channel="push", template=PUSH),  # no address
        FallbackOption(channel="email", template=EMAIL),
    ]

    decisions = await send(
        sessions,
        request("k1", fallback=fallback),
        request("k2"),
        request("k3", fallback=fallback[:1]),
    )

    assert decisions[0].outcome == "sent"
    assert (decisions[0].channel, decisions[0].fallback_used) == ("email", True)
    row = await message(sessions, "k1")
    assert (row.channel, row.template, row.template_version, row.address) == (
        "email",
        "card-welcome-email",
        "card-welcome-email-v1",
        "li@example.com",
    )
    assert (row.subject, row.body, row.html) == ("Card for Li Lei", "Hi", "<p>Hi</p>")
    # Nothing reachable: the step's own channel gives the reason.
    assert outcomes(decisions[1:]) == [("suppressed", "no_consent"), ("suppressed", "no_consent")]
    contact = await count(sessions, ContactLog, col(ContactLog.channel) == "email")
    assert contact == 1


async def test_the_steps_own_channel_reports_no_fallback(sessions: SessionFactory) -> None:
    await add_user(sessions)

    decisions = await send(
        sessions, request("k1", fallback=[FallbackOption(channel="email", template=EMAIL)])
    )

    assert (decisions[0].outcome, decisions[0].channel, decisions[0].fallback_used) == (
        "sent",
        "sms",
        False,
    )


async def test_a_service_message_needs_no_consent(sessions: SessionFactory) -> None:
    await add_user(sessions, consents={"sms": False})

    decisions = await send(sessions, request("k1", marketing=False))

    assert outcomes(decisions) == [("sent", None)]
    row = await message(sessions, "k1")
    assert (row.status, row.marketing, row.address) == ("pending", False, "+8613800000000")
    assert await count(sessions, ContactLog) == 0


# Rendering


async def test_renders_in_the_users_locale_with_every_root(sessions: SessionFactory) -> None:
    await add_user(sessions, "en-user", locale="en", attrs={"tier": "gold"})
    await add_user(sessions, "fr-user", locale="fr")
    rich = template(
        "rich",
        "email",
        {
            "zh-CN": {"body": "【示例银行】{{ user.name }}"},
            "en": {
                "subject": "{{ vars.greeting }}, {{ user.name }}",
                "body": (
                    "{{ user.attrs.tier }} {{ trigger.props.card }} {{ event.name }} "
                    "{{ benefit.value }} {{ steps.risk.outcome }} {{ journey.name }}@"
                    "{{ journey.version }} {{ now.year }} {{ user.consents.email }}"
                ),
            },
        },
    )
    context: dict[str, Any] = {
        "channel": "email",
        "template": rich,
        "vars": {"greeting": "Hello"},
        "trigger": {"name": "card_issued", "props": {"card": "Platinum"}},
        "steps": {"risk": {"outcome": "pass", "result": {}}},
        "benefit": {"value": 20},
    }

    await send(
        sessions,
        request("k-en", user_id="en-user", **context),
        request("k-fr", user_id="fr-user", **context),
    )

    english = await message(sessions, "k-en")
    assert (english.locale, english.subject) == ("en", "Hello, Li Lei")
    assert english.body == "gold Platinum card_issued 20 pass card-activation@j1 2026 True"
    fallback_locale = await message(sessions, "k-fr")
    assert (fallback_locale.locale, fallback_locale.body) == ("zh-CN", "【示例银行】Li Lei")


async def test_a_render_error_suppresses_and_is_recorded(sessions: SessionFactory) -> None:
    await add_user(sessions, locale="en")
    broken = template("broken", "sms", {"en": {"body": "{{ vars.missing }} STOP"}})
    needs_benefit = template("gift", "sms", {"en": {"body": "{{ benefit.value }} STOP"}})

    decisions = await send(
        sessions,
        request("k1", template=broken),
        request("k2", template=needs_benefit),
    )

    assert outcomes(decisions) == [("suppressed", "render_error")] * 2
    row = await message(sessions, "k1")
    assert (row.status, row.reason, row.body) == ("suppressed", "render_error", None)
    assert await count(sessions, ContactLog) == 0


async def test_a_marketing_sms_without_an_opt_out_is_suppressed(sessions: SessionFactory) -> None:
    await add_user(sessions, locale="en")
    bare = template("bare", "sms", {"en": {"body": "Your card ships today"}})

    decisions = await send(
        sessions,
        request("k1", template=bare),
        request("k2", template=bare, marketing=False),
        request("k3", template=template("shout", "sms", {"en": {"body": "reply stop"}})),
    )

    assert outcomes(decisions) == [("suppressed", "no_opt_out"), ("sent", None), ("sent", None)]


# Idempotency


async def test_a_repeated_key_returns_the_first_decision_and_writes_nothing(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions, consents={"email": True})
    fallback = [FallbackOption(channel="email", template=EMAIL)]
    first = await send(sessions, request("k1", fallback=fallback), request("k2"))
    rows = await count(sessions, Message), await count(sessions, ContactLog)

    # The user now consents to sms: a repeat still returns the first decisions.
    async with sessions() as session, session.begin():
        session.add(Consent(user_id="u1", channel="sms", granted=True, source="test"))
    again = await send(sessions, request("k1", fallback=fallback), request("k2"))

    assert again == first
    assert (first[0].outcome, first[0].channel, first[0].fallback_used) == ("sent", "email", True)
    assert outcomes(first[1:]) == [("suppressed", "no_consent")]
    assert (await count(sessions, Message), await count(sessions, ContactLog)) == rows == (2, 1)


async def test_concurrent_and_in_batch_repeats_of_a_key_decide_once(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions)

    concurrent = await send_each_concurrently(sessions, [request("k1") for _ in range(20)])
    in_batch = await send(sessions, request("k2"), request("k2"))

    assert {d.message_id for d in concurrent} == {concurrent[0].message_id}
    assert in_batch[0] == in_batch[1]
    assert in_batch[0].outcome == "sent"
    assert (await count(sessions, Message), await count(sessions, ContactLog)) == (2, 2)
