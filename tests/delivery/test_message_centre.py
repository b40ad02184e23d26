"""The message centre and a user's messages: what shows, in which order, read once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from cjo.delivery.feedback import DeliveryFeedback
from cjo.delivery.message_centre import (
    InboxPageInput,
    MarkReadInput,
    MessageCentre,
    UserMessagesInput,
)
from cjo.store.db import SessionFactory
from tests.delivery.message_rows import AT, message, store


def inbox_message(message_id: str, minutes: int, **changes: object) -> object:
    values: dict[str, object] = {
        "channel": "inbox",
        "status": "sent",
        "subject": f"subject {message_id}",
        "body": f"body {message_id}",
        "created_at": AT + timedelta(minutes=minutes),
    }
    return message(message_id, **(values | changes))


async def fill(sessions: SessionFactory) -> None:
    await store(
        sessions,
        inbox_message("i1", 1),
        inbox_message("i2", 2, status="delivered"),
        inbox_message("i3", 3, read_at=AT + timedelta(hours=1)),
        inbox_message("i4", 4, status="pending"),  # not delivered yet: not shown
        inbox_message("i5", 5, status="suppressed", reason="no_consent"),
        inbox_message("i6", 6, user_id="u2"),  # someone else's
        message("p1", created_at=AT + timedelta(minutes=7)),  # a push, not the inbox
    )


async def test_the_inbox_shows_delivered_inbox_messages_newest_first(
    sessions: SessionFactory,
) -> None:
    await fill(sessions)
    centre = MessageCentre(sessions)
    page = await centre.inbox(InboxPageInput(user_id="u1"))
    assert [(item.id, item.read) for item in page.items] == [
        ("i3", True),
        ("i2", False),
        ("i1", False),
    ]
    assert page.unread == 2 and page.next is None
    assert page.items[1].subject == "subject i2" and page.items[1].step == "push_offer"
    unread = await centre.inbox(InboxPageInput(user_id="u1", unread_only=True))
    assert [item.id for item in unread.items] == ["i2", "i1"]


async def test_the_inbox_pages_without_skipping_or_repeating(sessions: SessionFactory) -> None:
    # Several messages of one transaction share created_at: the id breaks the tie.
    await store(sessions, *(inbox_message(f"i{n}", 0) for n in range(5)))
    centre = MessageCentre(sessions)
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = await centre.inbox(InboxPageInput(user_id="u1", limit=2, after=after))
        seen += [item.id for item in page.items]
        after = page.next
        if after is None:
            break
    assert seen == ["i4", "i3", "i2", "i1", "i0"]


async def test_reading_is_idempotent_and_reports_one_open(sessions: SessionFactory) -> None:
    await fill(sessions)
    centre = MessageCentre(sessions, DeliveryFeedback(sessions, None))
    first = await centre.mark_read(MarkReadInput(user_id="u1", message_id="i1", at=AT))
    again = await centre.mark_read(
        MarkReadInput(user_id="u1", message_id="i1", at=AT + timedelta(hours=5))
    )
    assert first.found and first.read_at == AT
    assert again.found and again.read_at == AT  # the first read stands
    async with sessions() as session:
        connection = await session.connection()
        events = await connection.execute(text("SELECT name, props, ts FROM events"))
        (event,) = [tuple(row) for row in events]
    assert event[0] == "message_opened" and event[2] == AT
    assert event[1]["message_id"] == "i1" and event[1]["via"] == "inbox"  # type: ignore[index]
    page = await centre.inbox(InboxPageInput(user_id="u1"))
    assert page.unread == 1


async def test_only_the_users_own_visible_inbox_messages_can_be_read(
    sessions: SessionFactory,
) -> None:
    await fill(sessions)
    centre = MessageCentre(sessions, DeliveryFeedback(sessions, None))
    for user, message_id in [("u1", "i6"), ("u1", "i4"), ("u1", "p1"), ("u1", "nope")]:
        result = await centre.mark_read(MarkReadInput(user_id=user, message_id=message_id, at=AT))
        assert not result.found, message_id
    async with sessions() as session:
        connection = await session.connection()
        read = await connection.execute(
            text("SELECT count(*) FROM messages WHERE read_at IS NOT NULL")
        )
        assert read.scalar_one() == 1  # only i3, read before


async def test_a_users_messages_cover_every_channel_and_filter(sessions: SessionFactory) -> None:
    await fill(sessions)
    centre = MessageCentre(sessions)
    everything = await centre.messages(UserMessagesInput(user_id="u1"))
    assert [m.id for m in everything.items] == ["p1", "i5", "i4", "i3", "i2", "i1"]
    suppressed = await centre.messages(UserMessagesInput(user_id="u1", status="suppressed"))
    assert [(m.id, m.reason) for m in suppressed.items] == [("i5", "no_consent")]
    pushes = await centre.messages(UserMessagesInput(user_id="u1", channel="push"))
    assert [m.id for m in pushes.items] == ["p1"]
    first = await centre.messages(UserMessagesInput(user_id="u1", limit=4))
    rest = await centre.messages(UserMessagesInput(user_id="u1", limit=4, after=first.next))
    assert [m.id for m in first.items + rest.items] == [m.id for m in everything.items]
    assert rest.next is None
