"""Inbound SMS replies: an opt-out keyword revokes SMS consent at once.

A reply whose whole text (trimmed, Unicode-normalised, case-insensitive) is one of the
opt-out keywords (`Settings.opt_out_keywords`, by default R, TD, 退订, STOP) withdraws
SMS marketing consent of every profile with the sender's phone number, with the source
`sms_reply` and the reply's time. From that moment the send activity's consent check
suppresses marketing SMS to them, and the dispatcher's check at delivery time holds back
those already in the outbox; service messages (`marketing: false`) still go, as they
need no consent.

Every reply also becomes an `sms_replied` event for each matched user (props `text`,
`keyword`, `opted_out`), stored once per reply and user and routed to their journeys.

Phones are matched as stored, or in the usual spellings of the same number: digits only,
with a leading `+`, and for Chinese mobile numbers with or without `+86` / `86` / `0086`.
The lookup stays on the `profiles.phone` index, so store phones in one of these forms.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from pydantic import Field
from sqlalchemy import text

from cjo.activities.people.profiles import (
    ConsentChange,
    EventInput,
    ProfileActivities,
    SetConsentsInput,
)
from cjo.activities.runs.routing import RoutingActivities, store_and_route
from cjo.runtime.log import get_logger
from cjo.steps.run import Contract, Moment
from cjo.store.db import SessionFactory, reading

REPLY_EVENT = "sms_replied"
OPT_OUT_SOURCE = "sms_reply"
_CHINA_MOBILE = re.compile(r"^1[0-9]{10}$")

log = get_logger(__name__)


class SmsReply(Contract):
    """One inbound SMS; `id` is the provider's, so that a repeated callback counts once."""

    phone: str = Field(min_length=1, max_length=32)
    text: str = Field(max_length=1600)
    at: Moment
    id: str | None = Field(default=None, min_length=1, max_length=128)

    @property
    def key(self) -> str:
        if self.id is not None:
            return self.id
        # No provider id: the same sender, text and time is the same reply.
        return f"{self.phone}\x1f{self.text}\x1f{self.at.isoformat()}"


class RecordRepliesInput(Contract):
    replies: list[SmsReply]
    keywords: list[str]


class ReplyOutcome(Contract):
    """`keyword`: the opt-out keyword the reply is, if it is one; `revoked`: the users
    whose SMS consent it withdrew (a later consent change, already stored, wins)."""

    user_ids: list[str]
    keyword: str | None
    revoked: list[str]


class RecordRepliesResult(Contract):
    results: list[ReplyOutcome]
    events: int


def normalise(value: str) -> str:
    """How replies and keywords compare: full-width letters as ASCII, trimmed, any case."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def opt_out_keyword(reply_text: str, keywords: Iterable[str]) -> str | None:
    """The keyword `reply_text` is, as configured; None if it is not one."""
    said = normalise(reply_text)
    for keyword in keywords:
        if said and normalise(keyword) == said:
            return keyword
    return None


def phone_forms(phone: str) -> list[str]:
    """The spellings under which a profile may have stored this number."""
    raw = phone.strip()
    digits = re.sub(r"[^0-9]", "", raw)
    forms = {raw}
    if digits:
        forms |= {digits, f"+{digits}"}
        national = digits
        for prefix in ("0086", "86"):
            if digits.startswith(prefix) and _CHINA_MOBILE.match(digits[len(prefix) :]):
                national = digits[len(prefix) :]
                break
        if _CHINA_MOBILE.match(national):
            forms |= {national, f"+86{national}", f"86{national}", f"0086{national}"}
    return sorted(forms)


class SmsReplies:
    """Records inbound SMS replies: opt-outs as consent changes, every reply as events."""

    def __init__(self, sessions: SessionFactory, routing: RoutingActivities | None) -> None:
        self._sessions = sessions
        self._routing = routing
        self._profiles = ProfileActivities(sessions)

    async def record(self, data: RecordRepliesInput) -> RecordRepliesResult:
        users_by_form = await self._users_by_phone(
            {form for reply in data.replies for form in phone_forms(reply.phone)}
        )
        matched = [
            sorted({user for form in phone_forms(r.phone) for user in users_by_form.get(form, [])})
            for r in data.replies
        ]
        keywords = [opt_out_keyword(reply.text, data.keywords) for reply in data.replies]
        # (reply's index, change): which reply each consent change comes from.
        changes = [
            (
                index,
                ConsentChange(
                    user_id=user, consents={"sms": False}, source=OPT_OUT_SOURCE, at=r.at
                ),
            )
            for index, (r, users, keyword) in enumerate(
                zip(data.replies, matched, keywords, strict=True)
            )
            if keyword is not None
            for user in users
        ]
        revoked: set[tuple[int, str]] = set()
        if changes:
            outcome = await self._profiles.set_consents(
                SetConsentsInput(requests=[change for _, change in changes])
            )
            revoked = {
                (index, change.user_id)
                for (index, change), result in zip(changes, outcome.results, strict=True)
                if "sms" in result.applied
            }
        events = [
            _event(reply, user, keyword)
            for reply, users, keyword in zip(data.replies, matched, keywords, strict=True)
            for user in users
        ]
        routed = await store_and_route(self._profiles, self._routing, events)
        results = [
            ReplyOutcome(
                user_ids=users,
                keyword=keyword,
                revoked=[user for user in users if (index, user) in revoked],
            )
            for index, (users, keyword) in enumerate(zip(matched, keywords, strict=True))
        ]
        if changes:
            log.info(
                "sms opt-out",
                replies=sum(keyword is not None for keyword in keywords),
                revoked=len(revoked),
            )
        return RecordRepliesResult(results=results, events=routed)

    async def _users_by_phone(self, forms: set[str]) -> dict[str, list[str]]:
        if not forms:
            return {}
        async with reading(self._sessions) as connection:
            rows = await connection.execute(
                text("SELECT phone, id FROM profiles WHERE phone = ANY(:forms)"),
                {"forms": sorted(forms)},
            )
            found: dict[str, list[str]] = {}
            for phone, user_id in rows:
                found.setdefault(str(phone), []).append(str(user_id))
        return found


def _event(reply: SmsReply, user_id: str, keyword: str | None) -> EventInput:
    # One event per reply and user, whatever the length of either: a hash of both.
    digest = hashlib.sha256(f"{reply.key}\x1f{user_id}".encode()).hexdigest()[:40]
    return EventInput(
        id=f"sms-reply/{digest}",
        user_id=user_id,
        name=REPLY_EVENT,
        props={
            "channel": "sms",
            "text": reply.text,
            "keyword": keyword,
            "opted_out": keyword is not None,
            "reply_id": reply.id,
        },
        ts=reply.at,
    )
