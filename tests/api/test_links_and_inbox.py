"""Tracked-link redirects, the message centre and a user's messages, through the API."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from cjo.activities.messaging.links import link_signature
from cjo.runtime.settings import get_settings
from cjo.store.db import SessionFactory, reading
from tests.activities.messaging.test_send import add_user, request, send, template
from tests.api.support import problem
from tests.delivery.message_rows import AT, add_profile, message, store

OFFER = "https://bank.example/offer?id=7"
RATES = "https://bank.example/rates"


def signed_path(message_id: str, index: int) -> str:
    secret = get_settings().link_secret.get_secret_value()
    return f"/r/{message_id}/{index}?s={link_signature(secret, message_id, index)}"


async def clicks(sessions: SessionFactory) -> list[tuple[object, ...]]:
    async with reading(sessions) as connection:
        found = await connection.execute(
            text(
                "SELECT name, props->>'message_id', props->>'url' FROM events"
                " WHERE name = 'message_clicked' ORDER BY props->>'url'"
            )
        )
        return [tuple(row) for row in found]


async def test_a_sent_link_redirects_to_its_url_and_records_the_click(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_user(sessions, locale="en", addresses={"push": "device-token"})
    push = template(
        "offer-push",
        "push",
        {"en": {"body": f"Rates: {{{{ track('{RATES}') }}}} offer: {{{{ track('{OFFER}') }}}}"}},
    )
    (decision,) = await send(sessions, request("k1", channel="push", template=push))
    assert decision.message_id is not None
    async with reading(sessions) as connection:
        body = (
            await connection.execute(
                text("SELECT body FROM messages WHERE id = :id"), {"id": decision.message_id}
            )
        ).scalar_one()
    links = re.findall(r"https?://\S+/r/\S+", body)
    assert len(links) == 2
    for link, target in zip(links, [RATES, OFFER], strict=True):
        parts = urlsplit(link)
        answer = await db_api.get(f"{parts.path}?{parts.query}")
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == target
    again = await db_api.get(urlsplit(links[0]).path + "?" + urlsplit(links[0]).query)
    assert again.status_code == 302  # a second click still redirects, and counts once
    assert await clicks(sessions) == [
        ("message_clicked", decision.message_id, OFFER),
        ("message_clicked", decision.message_id, RATES),
    ]


async def test_a_link_never_redirects_anywhere_the_request_says(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await store(sessions, message("m1", links=[OFFER]))
    good = signed_path("m1", 0)
    # Extra parameters do not change the target.
    answer = await db_api.get(good + "&url=https://evil.example&next=https://evil.example")
    assert answer.headers["location"] == OFFER
    for path in (
        "/r/m1/0",  # unsigned
        "/r/m1/0?s=AAAAAAAAAAAAAAAAAAAAAA",  # forged
        signed_path("m1", 1),  # signed, but the message has one link
        signed_path("m2", 0),  # signed, no such message
        good.replace("/r/m1/", "/r/m2/"),  # m1's signature on m2
    ):
        body = problem(await db_api.get(path), 404)
        assert body["detail"] == "no such link"
    assert (await db_api.get("/r/m1/-1?s=x")).status_code == 422


async def test_the_inbox_lists_reads_and_pages(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_profile(sessions, "u1")
    await add_profile(sessions, "u2")
    rows = [
        message(
            f"i{n}",
            channel="inbox",
            subject=f"Notice {n}",
            created_at=AT + timedelta(minutes=n),
        )
        for n in range(3)
    ]
    rows.append(message("other", channel="inbox", user_id="u2"))
    rows.append(message("queued", channel="inbox", status="pending"))
    await store(sessions, *rows)
    inbox = await db_api.get("/v1/users/u1/inbox")
    assert inbox.status_code == 200, inbox.text
    listing = inbox.json()
    assert [item["id"] for item in listing["items"]] == ["i2", "i1", "i0"]
    assert listing["unread"] == 3 and listing["next_cursor"] is None
    assert listing["items"][0]["subject"] == "Notice 2" and listing["items"][0]["read"] is False

    read = await db_api.post("/v1/users/u1/inbox/i1/read")
    assert read.status_code == 200, read.text
    again = await db_api.post("/v1/users/u1/inbox/i1/read")
    assert again.json() == read.json() and read.json()["read"] is True
    for path in ("/v1/users/u1/inbox/other/read", "/v1/users/u1/inbox/queued/read"):
        problem(await db_api.post(path), 404)

    unread = (await db_api.get("/v1/users/u1/inbox", params={"unread": "true"})).json()
    assert [item["id"] for item in unread["items"]] == ["i2", "i0"] and unread["unread"] == 2
    first = (await db_api.get("/v1/users/u1/inbox", params={"limit": 2})).json()
    assert [item["id"] for item in first["items"]] == ["i2", "i1"]
    rest = (
        await db_api.get("/v1/users/u1/inbox", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [item["id"] for item in rest["items"]] == ["i0"] and rest["next_cursor"] is None
    async with reading(sessions) as connection:
        opened = await connection.execute(
            text("SELECT props->>'message_id' FROM events WHERE name = 'message_opened'")
        )
        assert opened.scalars().all() == ["i1"]  # read twice, opened once


async def test_a_users_messages_and_the_errors(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_profile(sessions, "u1")
    await store(
        sessions,
        message("sms1", channel="sms", status="suppressed", reason="no_consent", created_at=AT),
        message("push1", created_at=AT + timedelta(minutes=1)),
    )
    listing = (await db_api.get("/v1/users/u1/messages")).json()
    assert [(m["id"], m["status"], m["reason"]) for m in listing["items"]] == [
        ("push1", "sent", None),
        ("sms1", "suppressed", "no_consent"),
    ]
    only_sms = (await db_api.get("/v1/users/u1/messages", params={"channel": "sms"})).json()
    assert [m["id"] for m in only_sms["items"]] == ["sms1"]
    problem(await db_api.get("/v1/users/nobody/messages"), 404)
    problem(await db_api.get("/v1/users/nobody/inbox"), 404)
    problem(await db_api.get("/v1/users/u1/inbox", params={"cursor": "garbage!"}), 422)
    problem(await db_api.get("/v1/users/u1/messages", params={"status": "lost"}), 422)
    problem(await db_api.get("/v1/users/u1/messages", params={"channel": "fax"}), 422)
