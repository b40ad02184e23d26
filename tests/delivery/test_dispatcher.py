"""The dispatcher against a real PostgreSQL and real receivers: claims, outcomes, receipts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import col, select

from cjo.delivery._store import claim
from cjo.delivery.dispatcher import BatchSummary, Dispatcher
from cjo.delivery.feedback import DeliveryFeedback, DeliveryReport, RecordReportsInput
from cjo.delivery.providers.base import Accepted
from cjo.delivery.providers.http import HttpProvider
from cjo.runtime.settings import ProviderSettings
from cjo.store.db import SessionFactory
from cjo.store.schema import Consent, DeliveryReceipt, Event, Profile
from tests.delivery.support import (
    http_provider,
    messages,
    none_pending,
    put_messages,
    run_until,
    settings,
)
from tests.receivers import Answer, HttpReceiver, SmtpReceiver


async def receipts(sessions: SessionFactory) -> list[DeliveryReceipt]:
    async with sessions() as session:
        return list((await session.exec(select(DeliveryReceipt))).all())


async def events(sessions: SessionFactory) -> list[Event]:
    async with sessions() as session:
        return list((await session.exec(select(Event).order_by(col(Event.name)))).all())


async def test_a_batch_is_delivered_marked_sent_and_receipted(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    ids = await put_messages(sessions, 20)
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary == BatchSummary(claimed=20, sent=20)
    assert receiver.keys() == dict.fromkeys(ids, 1)
    assert receiver.stats()["bad_signatures"] == 0
    refs = {request.key: request for request in receiver.requests}
    rows = await messages(sessions)
    for message_id in ids:
        row = rows[message_id]
        assert (row.status, row.attempts, row.lease_until, row.last_error) == (
            "sent",
            1,
            None,
            None,
        )
        assert row.sent_at is not None
        assert refs[message_id].json()["body"] == row.body
    # Each message's provider id is the one the receiver gave its key.
    assert sorted(row.provider_ref or "" for row in rows.values()) == sorted(
        f"ref-{n}" for n in range(1, 21)
    )
    stored = await receipts(sessions)
    assert sorted((r.message_id, r.status) for r in stored) == sorted(
        (message_id, "sent") for message_id in ids
    )
    # `sent` is the dispatcher's own bookkeeping: no event.
    assert await events(sessions) == []
    # Keyed as the feedback keys receipts: the same report through it is a repeat.
    again = await DeliveryFeedback(sessions, None).record(
        RecordReportsInput(
            reports=[DeliveryReport(message_id=ids[0], status="sent", at=datetime.now(UTC))]
        )
    )
    assert (again.recorded, again.duplicates) == (0, 1)


async def test_only_due_messages_whose_lease_is_free_are_claimed(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    due = await put_messages(sessions, 2)
    later = await put_messages(sessions, 1, due_in=3600)
    leased = await put_messages(sessions, 1)
    lapsed = await put_messages(sessions, 1)
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(
            text(
                "UPDATE messages SET lease_until = now() + interval '1 minute', attempts = 1"
                " WHERE id = :id"
            ),
            {"id": leased[0]},
        )
        await connection.execute(
            text(
                "UPDATE messages SET lease_until = now() - interval '1 second', attempts = 1"
                " WHERE id = :id"
            ),
            {"id": lapsed[0]},
        )

    async with sessions() as session, session.begin():
        claimed = await claim(await session.connection(), limit=10, lease=30)

    by_id = {item.message.id: item.message.attempt for item in claimed}
    assert by_id == {due[0]: 1, due[1]: 1, lapsed[0]: 2}
    rows = await messages(sessions)
    assert all(rows[i].lease_until is not None for i in by_id)
    assert rows[later[0]].attempts == 0 and rows[leased[0]].attempts == 1


async def test_two_dispatchers_side_by_side_deliver_each_message_once(
    sessions: SessionFactory,
) -> None:
    ids = await put_messages(sessions, 300)
    with HttpReceiver(delay=0.002) as receiver:
        config = settings({"*": {"sms": http_provider(receiver.url)}}, dispatcher_batch_size=20)
        first, second = Dispatcher(sessions, config), Dispatcher(sessions, config)

        await asyncio.gather(
            run_until(first, lambda: none_pending(sessions)),
            run_until(second, lambda: none_pending(sessions)),
        )
        await first.aclose()
        await second.aclose()

        # Four lanes claimed side by side; not one message went twice, even with its key.
        assert len(receiver.requests) == 300
        assert set(receiver.keys()) == set(ids)
    rows = await messages(sessions)
    assert {(row.status, row.attempts) for row in rows.values()} == {("sent", 1)}


async def test_a_marketing_message_to_someone_who_has_since_opted_out_is_suppressed(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    async with sessions() as session, session.begin():
        session.add_all([Profile(id="u-0"), Profile(id="u-1")])
        await session.flush()
        session.add_all(
            [
                Consent(user_id="u-0", channel="sms", granted=False, source="sms_reply"),
                Consent(user_id="u-1", channel="sms", granted=True, source="app"),
            ]
        )
    [opted_out] = await put_messages(sessions, 1, marketing=True, user_id="u-0")
    [service] = await put_messages(sessions, 1, marketing=False, user_id="u-0")
    [consented] = await put_messages(sessions, 1, marketing=True, user_id="u-1")
    [no_record] = await put_messages(sessions, 1, marketing=True, user_id="u-2")
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary == BatchSummary(claimed=4, sent=3, suppressed=1)
    assert set(receiver.keys()) == {service, consented, no_record}
    rows = await messages(sessions)
    assert (rows[opted_out].status, rows[opted_out].reason) == ("suppressed", "opted_out")
    assert rows[opted_out].lease_until is None and rows[opted_out].sent_at is None


async def test_a_channel_without_a_provider_fails_with_a_receipt_and_an_event(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    [message_id] = await put_messages(sessions, 1, channel="wechat", user_id="u-7")
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary == BatchSummary(claimed=1, failed=1)
    row = (await messages(sessions))[message_id]
    assert row.status == "failed"
    assert row.last_error == "no provider configured for channel 'wechat' of business line 'retail'"
    assert [(r.message_id, r.status) for r in await receipts(sessions)] == [(message_id, "failed")]
    [event] = await events(sessions)
    assert (event.name, event.user_id) == ("message_failed", "u-7")
    assert event.props["message_id"] == message_id and event.props["channel"] == "wechat"
    assert event.props["error"] == row.last_error
    assert receiver.requests == []


async def test_the_business_lines_own_provider_comes_before_the_shared_one(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    retail = await put_messages(sessions, 2, business_line="retail")
    cards = await put_messages(sessions, 3, business_line="credit-card")
    with HttpReceiver(secret="cards-secret") as cards_receiver:
        own = http_provider(cards_receiver.url, secret="cards-secret")
        config = settings({"*": {"sms": http_provider(receiver.url)}, "credit-card": {"sms": own}})
        dispatcher = Dispatcher(sessions, config)

        await dispatcher.run_once()
        await dispatcher.aclose()

        assert set(cards_receiver.keys()) == set(cards)
        assert cards_receiver.stats()["bad_signatures"] == 0
    assert set(receiver.keys()) == set(retail)


async def test_a_permanent_refusal_fails_at_the_first_attempt(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    [message_id] = await put_messages(sessions, 1, user_id="u-3")
    receiver.script(Answer(400, body=b'{"error":"no such number"}'))
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary == BatchSummary(claimed=1, failed=1)
    row = (await messages(sessions))[message_id]
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == 'HTTP 400: {"error":"no such number"}'
    assert [event.name for event in await events(sessions)] == ["message_failed"]


async def test_a_message_that_keeps_failing_fails_after_max_attempts(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    [message_id] = await put_messages(sessions, 1, user_id="u-4")
    receiver.fail_for(3600, status=503)
    provider = http_provider(receiver.url, max_attempts=3, breaker_failures=100)
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": provider}}))

    await run_until(dispatcher, lambda: none_pending(sessions))
    await dispatcher.aclose()

    assert receiver.keys() == {message_id: 3}
    row = (await messages(sessions))[message_id]
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error == 'gave up after 3 attempts: HTTP 503: {"status":503}'
    assert [(r.status, r.raw) for r in await receipts(sessions)] == [
        ("failed", {"error": row.last_error})
    ]
    [event] = await events(sessions)
    assert (event.name, event.user_id, event.props["message_id"]) == (
        "message_failed",
        "u-4",
        message_id,
    )
    assert event.props["step"] == "welcome_sms" and event.props["journey"] == "card-activation"


async def test_an_inbox_message_is_delivered_at_once(sessions: SessionFactory) -> None:
    [message_id] = await put_messages(sessions, 1, channel="inbox", address=None, user_id="u-5")
    dispatcher = Dispatcher(sessions, settings({"*": {"inbox": ProviderSettings(kind="inbox")}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary == BatchSummary(claimed=1, delivered=1)
    row = (await messages(sessions))[message_id]
    assert row.status == "delivered" and row.sent_at is not None
    assert [r.status for r in await receipts(sessions)] == ["delivered"]
    [event] = await events(sessions)
    assert (event.name, event.user_id) == ("message_delivered", "u-5")


async def test_an_email_goes_through_smtp(sessions: SessionFactory, smtp: SmtpReceiver) -> None:
    [message_id] = await put_messages(
        sessions,
        1,
        channel="email",
        address="han.meimei@example.com",
        subject="账单",
        body="本月账单已出。",
        html="<p>本月账单已出。</p>",
    )
    email = ProviderSettings(
        kind="smtp", host="127.0.0.1", port=smtp.port, sender="Bank <bills@bank.example>"
    )
    dispatcher = Dispatcher(sessions, settings({"*": {"email": email}}))

    await dispatcher.run_once()
    await dispatcher.aclose()

    row = (await messages(sessions))[message_id]
    assert (row.status, row.provider_ref) == ("sent", f"<{message_id}@bank.example>")
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["han.meimei@example.com"]
    assert mail.message_id == f"<{message_id}@bank.example>"


async def test_the_rate_limit_spaces_the_sends(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    await put_messages(sessions, 30)
    provider = http_provider(receiver.url, rate_per_second=20)
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": provider}}))

    await run_until(dispatcher, lambda: none_pending(sessions))
    await dispatcher.aclose()

    arrivals = sorted(request.at for request in receiver.requests)
    assert len(arrivals) == 30
    # A bucket of 20 (one second's worth) refilled at 20/s: in any stretch of t seconds at
    # most 20 + 20 t arrive (one more for the receiver's clock being a little off).
    for first in range(30):
        for last in range(first, 30):
            assert last - first + 1 <= 20 + 20 * (arrivals[last] - arrivals[first]) + 1
    assert arrivals[-1] - arrivals[0] >= 0.45


async def test_a_lapsed_lease_redelivers_with_the_same_key_and_the_provider_sees_one(
    sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    """What a dispatcher killed between the provider's answer and writing it down leaves."""
    [message_id] = await put_messages(sessions, 1)
    async with sessions() as session, session.begin():
        [dead] = await claim(await session.connection(), limit=1, lease=0.2)
    provider = HttpProvider(http_provider(receiver.url))
    first = await provider.deliver(dead.message)
    await provider.aclose()
    await asyncio.sleep(0.3)  # the dead dispatcher's lease lapses
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    summary = await dispatcher.run_once()
    await dispatcher.aclose()

    assert summary.sent == 1
    assert receiver.keys() == {message_id: 2}
    assert receiver.stats() == {
        "requests": 2,
        "distinct_keys": 1,
        "accepted": 1,
        "replays": 1,
        "bad_signatures": 0,
        "unsigned": 0,
    }
    row = (await messages(sessions))[message_id]
    # The provider answered the repeat with the first id: one message, as far as it can tell.
    assert (row.status, row.attempts, row.provider_ref) == ("sent", 2, "ref-1")
    assert first == Accepted("sent", "ref-1")


async def test_a_long_delivery_keeps_its_lease_so_no_other_dispatcher_takes_it(
    sessions: SessionFactory,
) -> None:
    [message_id] = await put_messages(sessions, 1)
    with HttpReceiver(delay=1.0) as slow:
        config = settings(
            {"*": {"sms": http_provider(slow.url)}},
            dispatcher_lease_seconds=0.3,
        )
        busy, idle = Dispatcher(sessions, config), Dispatcher(sessions, config)

        await asyncio.gather(
            run_until(busy, lambda: none_pending(sessions)),
            run_until(idle, lambda: none_pending(sessions)),
        )
        await busy.aclose()
        await idle.aclose()

        assert slow.keys() == {message_id: 1}


async def test_stopping_finishes_the_batch_in_hand(
    sessions: SessionFactory,
) -> None:
    ids = await put_messages(sessions, 10)
    with HttpReceiver(delay=0.3) as slow:
        dispatcher = Dispatcher(
            sessions, settings({"*": {"sms": http_provider(slow.url)}}, dispatcher_concurrency=10)
        )
        stop = asyncio.Event()
        running = asyncio.create_task(dispatcher.run(stop))
        started = time.monotonic()
        while not slow.requests:
            assert time.monotonic() - started < 30, "nothing arrived"
            await asyncio.sleep(0.01)

        stop.set()
        await running
        await dispatcher.aclose()

    rows = await messages(sessions)
    assert {rows[i].status for i in ids} == {"sent"}
    assert {rows[i].lease_until for i in ids} == {None}


async def test_messages_not_yet_due_wait(sessions: SessionFactory, receiver: HttpReceiver) -> None:
    await put_messages(sessions, 3, due_in=3600)
    dispatcher = Dispatcher(sessions, settings({"*": {"sms": http_provider(receiver.url)}}))

    assert await dispatcher.run_once() == BatchSummary()
    await dispatcher.aclose()
    assert receiver.requests == []
    rows = await messages(sessions)
    assert {(row.status, row.attempts) for row in rows.values()} == {("pending", 0)}
    assert all(
        row.not_before is not None and row.not_before > datetime.now(UTC) + timedelta(minutes=59)
        for row in rows.values()
    )
