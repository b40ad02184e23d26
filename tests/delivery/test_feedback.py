"""DeliveryFeedback on a real PostgreSQL: receipts once, statuses forward, reports as events."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from cjo.delivery.feedback import (
    DeliveryFeedback,
    DeliveryReport,
    RecordReportsInput,
    report_time,
)
from cjo.store.db import SessionFactory
from tests.delivery.message_rows import AT, message, store


async def rows(sessions: SessionFactory, sql: str) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        return [tuple(row) for row in await connection.execute(text(sql))]


def report(message_id: str, status: str, **changes: object) -> DeliveryReport:
    values: dict[str, object] = {"message_id": message_id, "status": status, "at": AT}
    return DeliveryReport.model_validate(values | changes)


async def test_a_report_is_stored_once_and_becomes_one_event(sessions: SessionFactory) -> None:
    await store(sessions, message("m1"))
    feedback = DeliveryFeedback(sessions, routing=None)
    delivered = report("m1", "delivered", provider_ref="p-1", detail={"carrier": "cmcc"})
    first = await feedback.record(RecordReportsInput(reports=[delivered]))
    assert (first.recorded, first.duplicates, first.events) == (1, 0, 1)
    again = await feedback.record(RecordReportsInput(reports=[delivered, delivered]))
    assert (again.recorded, again.duplicates, again.events) == (0, 2, 0)
    assert await rows(sessions, "SELECT status, provider_ref FROM messages") == [
        ("delivered", "p-1")
    ]
    assert await rows(sessions, "SELECT key, status FROM delivery_receipts") == [
        ("m1/delivered/", "delivered")
    ]
    (event,) = await rows(sessions, "SELECT client_id, user_id, name, props, ts FROM events")
    assert event[:3] == ("m1/delivered/", "u1", "message_delivered")
    assert event[3] == {
        "message_id": "m1",
        "channel": "push",
        "template": "salary-offer-push",
        "journey": "salary-day-offer",
        "step": "push_offer",
        "workflow_id": "journey/retail/salary-day-offer/u1",
        "marketing": True,
        "carrier": "cmcc",
    }
    assert event[4] == AT


async def test_report_detail_cannot_overwrite_what_the_message_says(
    sessions: SessionFactory,
) -> None:
    """A journey's `where` on `step` or `message_id` must not be steerable by a provider."""
    await store(sessions, message("m1"))
    forged = report("m1", "opened", detail={"step": "other_step", "message_id": "m9", "os": "ios"})
    await DeliveryFeedback(sessions, None).record(RecordReportsInput(reports=[forged]))
    ((props,),) = await rows(sessions, "SELECT props FROM events")
    assert props["step"] == "push_offer" and props["message_id"] == "m1"  # type: ignore[index]
    assert props["os"] == "ios"  # type: ignore[index]


async def test_unknown_messages_are_named_and_change_nothing(sessions: SessionFactory) -> None:
    await store(sessions, message("m1"))
    result = await DeliveryFeedback(sessions, None).record(
        RecordReportsInput(reports=[report("nope", "delivered"), report("m1", "opened")])
    )
    assert result.unknown_message_ids == ["nope"]
    assert (result.recorded, result.events) == (1, 1)
    assert await rows(sessions, "SELECT message_id FROM delivery_receipts") == [("m1",)]


async def test_a_late_failure_does_not_undo_a_delivery(sessions: SessionFactory) -> None:
    await store(sessions, message("m1"), message("m2"))
    feedback = DeliveryFeedback(sessions, None)
    await feedback.record(RecordReportsInput(reports=[report("m1", "delivered")]))
    later = AT + timedelta(minutes=5)
    result = await feedback.record(
        RecordReportsInput(reports=[report("m1", "failed", at=later), report("m2", "failed")])
    )
    # Both are receipts and events (what the provider said is kept), but m1 stays delivered.
    assert (result.recorded, result.events) == (2, 2)
    assert await rows(sessions, "SELECT id, status FROM messages ORDER BY id") == [
        ("m1", "delivered"),
        ("m2", "failed"),
    ]


async def test_opens_and_clicks_leave_the_status_alone(sessions: SessionFactory) -> None:
    await store(sessions, message("m1", status="delivered"))
    feedback = DeliveryFeedback(sessions, None)
    await feedback.record(
        RecordReportsInput(reports=[report("m1", "opened"), report("m1", "clicked")])
    )
    assert await rows(sessions, "SELECT status FROM messages") == [("delivered",)]
    names = await rows(sessions, "SELECT name FROM events ORDER BY name")
    assert names == [("message_clicked",), ("message_opened",)]


async def test_report_ids_keep_distinct_reports_of_one_status_apart(
    sessions: SessionFactory,
) -> None:
    await store(sessions, message("m1"))
    feedback = DeliveryFeedback(sessions, None)
    clicks = [
        report("m1", "clicked", report_id="link-0"),
        report("m1", "clicked", report_id="link-1"),
        report("m1", "clicked", report_id="link-0"),
    ]
    result = await feedback.record(RecordReportsInput(reports=clicks))
    assert (result.recorded, result.duplicates, result.events) == (2, 1, 2)


async def test_sent_is_a_receipt_but_no_event(sessions: SessionFactory) -> None:
    await store(sessions, message("m1", status="pending"))
    result = await DeliveryFeedback(sessions, None).record(
        RecordReportsInput(reports=[report("m1", "sent", provider_ref="p-7")])
    )
    assert (result.recorded, result.events) == (1, 0)
    assert await rows(sessions, "SELECT count(*) FROM events") == [(0,)]
    assert await rows(sessions, "SELECT status FROM delivery_receipts") == [("sent",)]


def test_a_report_time_is_the_providers_when_given() -> None:
    arrived = AT + timedelta(minutes=1)
    assert report_time(None, arrived) == arrived
    assert report_time(AT.replace(tzinfo=None), arrived) == AT


async def test_long_report_ids_that_share_a_prefix_stay_two_events(
    sessions: SessionFactory,
) -> None:
    await store(sessions, message("m1"))
    common = "r" * 120
    clicks = [
        report("m1", "clicked", report_id=f"{common}-a"),
        report("m1", "clicked", report_id=f"{common}-b"),
    ]
    result = await DeliveryFeedback(sessions, None).record(RecordReportsInput(reports=clicks))
    assert (result.recorded, result.events) == (2, 2)
    ids = [row[0] for row in await rows(sessions, "SELECT client_id FROM events")]
    assert len(set(ids)) == 2 and all(len(str(i)) <= 128 for i in ids)
