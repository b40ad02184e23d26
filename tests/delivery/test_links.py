"""Tracked links: rendered into messages at send time, resolved and recorded on a click."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import text

from cjo.activities.messaging.links import LinkTracker, link_signature, link_signature_ok
from cjo.delivery.clicks import TrackedLinks
from cjo.delivery.feedback import DeliveryFeedback
from cjo.runtime.settings import get_settings
from cjo.store.db import SessionFactory
from cjo.store.schema import Message
from tests.activities.messaging.test_send import add_user, request, send, template
from tests.delivery.message_rows import AT, message, store

OFFER = "https://bank.example/offer?id=7"
RATES = "https://bank.example/rates"
SECRET = "test-link-secret"


def test_a_tracker_gives_each_url_one_index_and_a_signed_link() -> None:
    tracker = LinkTracker("m1", base_url="https://cjo.example/", secret=SECRET)
    first, second, again = tracker(OFFER), tracker(RATES), tracker(OFFER)
    assert tracker.links == [OFFER, RATES]
    assert first == again == f"https://cjo.example/r/m1/0?s={link_signature(SECRET, 'm1', 0)}"
    assert second.startswith("https://cjo.example/r/m1/1?s=")
    signature = link_signature(SECRET, "m1", 0)
    assert link_signature_ok(SECRET, "m1", 0, signature)
    assert not link_signature_ok(SECRET, "m1", 1, signature)  # another link of the message
    assert not link_signature_ok(SECRET, "m2", 0, signature)  # the same link of another
    assert not link_signature_ok("other-secret", "m1", 0, signature)


def link_parts(link: str) -> tuple[str, int, str]:
    parts = urlsplit(link)
    _, r, message_id, index = parts.path.split("/")
    assert r == "r"
    return message_id, int(index), parse_qs(parts.query)["s"][0]


async def stored(sessions: SessionFactory, message_id: str) -> Message:
    async with sessions() as session:
        row = await session.get(Message, message_id)
        assert row is not None
        return row


async def test_a_send_renders_tracked_links_and_stores_their_urls(
    sessions: SessionFactory,
) -> None:
    await add_user(sessions, locale="en")
    email = template(
        "offer-email",
        "email",
        {
            "en": {
                "subject": "Offer {{ track('" + OFFER + "') }}",
                "body": "See {{ track('" + RATES + "') }} or {{ track('" + OFFER + "') }}",
                "html": "<a href=\"{{ track('" + RATES + "') }}\">rates</a>",
            }
        },
    )
    (decision,) = await send(sessions, request("k1", channel="email", template=email))
    assert decision.outcome == "sent" and decision.message_id is not None
    row = await stored(sessions, decision.message_id)
    # Indexes by first appearance: subject, then body, then html.
    assert row.links == [OFFER, RATES]
    settings = get_settings()
    base = settings.public_base_url.rstrip("/")
    links = re.findall(
        re.escape(base) + r"/r/\S+?(?=[\s\"]|$)", f"{row.subject} {row.body} {row.html}"
    )
    assert len(links) == 4
    secret = settings.link_secret.get_secret_value()
    found = [link_parts(link) for link in links]
    assert [(m, i) for m, i, _ in found] == [(row.id, 0), (row.id, 1), (row.id, 0), (row.id, 1)]
    assert all(link_signature_ok(secret, m, i, s) for m, i, s in found)
    assert OFFER not in (row.body or "")  # the customer only ever sees the tracked link


async def test_a_computed_url_suppresses_the_send_at_run_time(sessions: SessionFactory) -> None:
    """Validation refuses it; a template that skipped validation still cannot use it."""
    await add_user(sessions, locale="en", addresses={"push": "device-token"})
    sneaky = template("sneaky", "push", {"en": {"body": "{{ track(vars.url) }}"}})
    (decision,) = await send(
        sessions, request("k1", channel="push", template=sneaky, vars={"url": OFFER})
    )
    assert (decision.outcome, decision.reason) == ("suppressed", "render_error")


async def test_messages_without_tracked_links_store_none(sessions: SessionFactory) -> None:
    await add_user(sessions)
    (decision,) = await send(sessions, request("k1"))
    assert decision.message_id is not None
    assert (await stored(sessions, decision.message_id)).links == []


async def receipts(sessions: SessionFactory) -> list[tuple[object, ...]]:
    async with sessions() as session:
        connection = await session.connection()
        found = await connection.execute(
            text("SELECT key, raw FROM delivery_receipts ORDER BY key")
        )
        return [tuple(row) for row in found]


async def test_a_click_redirects_to_the_stored_url_and_counts_once_per_link(
    sessions: SessionFactory,
) -> None:
    await store(sessions, message("m1", links=[OFFER, RATES]))
    links = TrackedLinks(sessions, DeliveryFeedback(sessions, None), SECRET)
    later = AT + timedelta(minutes=3)
    assert await links.click("m1", 0, link_signature(SECRET, "m1", 0), AT) == OFFER
    assert await links.click("m1", 1, link_signature(SECRET, "m1", 1), AT) == RATES
    assert await links.click("m1", 0, link_signature(SECRET, "m1", 0), later) == OFFER
    assert await receipts(sessions) == [
        ("m1/clicked/link-0", {"link": 0, "url": OFFER}),
        ("m1/clicked/link-1", {"link": 1, "url": RATES}),
    ]


async def test_links_cjo_did_not_make_lead_nowhere(sessions: SessionFactory) -> None:
    await store(sessions, message("m1", links=[OFFER]))
    links = TrackedLinks(sessions, DeliveryFeedback(sessions, None), SECRET)
    forged = link_signature("guessed", "m1", 0)
    assert await links.click("m1", 0, forged, AT) is None
    assert await links.click("m1", 0, "", AT) is None
    # Signed, but the message declared only one link.
    assert await links.click("m1", 1, link_signature(SECRET, "m1", 1), AT) is None
    # Signed, for a message that does not exist.
    assert await links.click("m9", 0, link_signature(SECRET, "m9", 0), AT) is None
    assert await links.click("m1", -1, link_signature(SECRET, "m1", -1), AT) is None
    assert await receipts(sessions) == []
