"""Inbound SMS replies on a real PostgreSQL: opt-out keywords revoke SMS consent by phone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from cjo.activities.people.profiles import ConsentChange, ProfileActivities, SetConsentsInput
from cjo.delivery.replies import (
    OPT_OUT_SOURCE,
    RecordRepliesInput,
    SmsReplies,
    SmsReply,
    opt_out_keyword,
    phone_forms,
)
from cjo.runtime.settings import DEFAULT_OPT_OUT_KEYWORDS
from cjo.store.db import SessionFactory
from tests.delivery.message_rows import AT, add_profile

KEYWORDS = list(DEFAULT_OPT_OUT_KEYWORDS)


@pytest.mark.parametrize(
    ("said", "keyword"),
    [
        ("R", "R"),
        ("r", "R"),
        ("  td\n", "TD"),
        ("退订", "退订"),
        (" 退订 ", "退订"),
        ("Stop", "STOP"),
        ("ＳＴＯＰ", "STOP"),  # full-width letters, as Chinese keyboards type them
        ("Ｒ", "R"),
        ("STOP please", None),
        ("请退订", None),
        ("", None),
        ("   ", None),
        ("RR", None),
    ],
)
def test_a_reply_is_an_opt_out_only_when_it_is_a_keyword_whole(
    said: str, keyword: str | None
) -> None:
    assert opt_out_keyword(said, KEYWORDS) == keyword


def test_configured_keywords_replace_the_defaults() -> None:
    assert opt_out_keyword("unsubscribe", ["UNSUBSCRIBE"]) == "UNSUBSCRIBE"
    assert opt_out_keyword("R", ["UNSUBSCRIBE"]) is None


def test_phone_forms_cover_the_usual_spellings_of_one_number() -> None:
    forms = phone_forms("+86 138-0000-0001")
    assert {"13800000001", "+8613800000001", "8613800000001", "+86 138-0000-0001"} <= set(forms)
    assert "+8613800000001" in phone_forms("13800000001")
    # Not a Chinese mobile: no +86 forms are made up for it.
    assert set(phone_forms("+44 20 7946 0000")) == {
        "+44 20 7946 0000",
        "+442079460000",
        "442079460000",
    }


async def consents(sessions: SessionFactory) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        found = await connection.execute(
            text("SELECT user_id, channel, granted, source, updated_at FROM consents ORDER BY 1, 2")
        )
        return [tuple(row) for row in found]


async def grant(sessions: SessionFactory, user_id: str, at: object = AT) -> None:
    change = ConsentChange(
        user_id=user_id, consents={"sms": True, "push": True}, source="app", at=at
    )
    await ProfileActivities(sessions).set_consents(SetConsentsInput(requests=[change]))


async def test_an_opt_out_revokes_sms_of_everyone_with_that_phone(
    sessions: SessionFactory,
) -> None:
    await add_profile(sessions, "u1", phone="+8613800000001")
    await add_profile(sessions, "u2", phone="13800000001")  # the same number, spelt otherwise
    await add_profile(sessions, "u3", phone="13900000009")
    for user in ("u1", "u2", "u3"):
        await grant(sessions, user)
    replied = AT + timedelta(hours=1)
    result = await SmsReplies(sessions, None).record(
        RecordRepliesInput(
            replies=[SmsReply(phone="13800000001", text=" td ", at=replied, id="r-1")],
            keywords=KEYWORDS,
        )
    )
    (outcome,) = result.results
    assert outcome.user_ids == ["u1", "u2"] and outcome.revoked == ["u1", "u2"]
    assert outcome.keyword == "TD" and result.events == 2
    assert await consents(sessions) == [
        ("u1", "push", True, "app", AT),
        ("u1", "sms", False, OPT_OUT_SOURCE, replied),
        ("u2", "push", True, "app", AT),
        ("u2", "sms", False, OPT_OUT_SOURCE, replied),
        ("u3", "push", True, "app", AT),
        ("u3", "sms", True, "app", AT),
    ]
    async with sessions() as session:
        connection = await session.connection()
        events = await connection.execute(
            text("SELECT user_id, name, props, ts FROM events ORDER BY user_id")
        )
        stored = [tuple(row) for row in events]
    assert [row[:2] for row in stored] == [("u1", "sms_replied"), ("u2", "sms_replied")]
    assert stored[0][2] == {
        "channel": "sms",
        "text": " td ",
        "keyword": "TD",
        "opted_out": True,
        "reply_id": "r-1",
    }
    assert stored[0][3] == replied


async def test_other_replies_are_events_and_unknown_numbers_change_nothing(
    sessions: SessionFactory,
) -> None:
    await add_profile(sessions, "u1", phone="13800000001")
    await grant(sessions, "u1")
    replies = SmsReplies(sessions, None)
    data = RecordRepliesInput(
        replies=[
            SmsReply(phone="13800000001", text="What is the rate?", at=AT, id="r-1"),
            SmsReply(phone="13700000000", text="R", at=AT, id="r-2"),
        ],
        keywords=KEYWORDS,
    )
    first = await replies.record(data)
    assert [(o.user_ids, o.keyword, o.revoked) for o in first.results] == [
        (["u1"], None, []),
        ([], "R", []),
    ]
    assert first.events == 1
    again = await replies.record(data)  # the provider repeats its callback
    assert again.events == 0
    assert ("u1", "sms", True, "app", AT) in await consents(sessions)


async def test_a_late_reply_does_not_undo_a_newer_consent(sessions: SessionFactory) -> None:
    """The customer opted out, then opted in again in the app; the SMS reply arrives late."""
    await add_profile(sessions, "u1", phone="13800000001")
    await grant(sessions, "u1", at=AT + timedelta(hours=2))
    result = await SmsReplies(sessions, None).record(
        RecordRepliesInput(
            replies=[SmsReply(phone="13800000001", text="R", at=AT + timedelta(hours=1))],
            keywords=KEYWORDS,
        )
    )
    assert result.results[0].revoked == []
    assert ("u1", "sms", True, "app", AT + timedelta(hours=2)) in await consents(sessions)
