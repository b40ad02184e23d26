"""The rules of reaching a person, as pure functions over rows already loaded.

Kept apart from `messaging` so that each rule (address, consent, quiet hours, caps, locale,
opt-out) reads and tests on its own; `messaging` owns the transaction that applies them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cjo.dsl import TemplateSpec, render_template
from cjo.dsl.plan import PlanFrequency, PlanQuietHours
from cjo.runtime.channels import ANY_CHANNEL, BY_NAME, OPT_OUT_CHANNELS, AddressedBy

Unreachable = Literal["no_address", "no_consent"]


class Contact(NamedTuple):
    """One earlier contact that counts against frequency caps."""

    journey: str | None
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Rendered:
    locale: str
    subject: str | None
    body: str
    html: str | None


def _addressed_by(channel: str) -> AddressedBy:
    """How the channel list says `channel` is addressed; a name it lacks, by `addresses`."""
    facts = BY_NAME.get(channel)
    return facts.address if facts is not None else "addresses"


class Addressable(Protocol):
    """What addressing reads of a profile (a stored one or the journeys' `UserProfile`)."""

    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def addresses(self) -> Mapping[str, Any]: ...


def address_of(channel: str, profile: Addressable) -> str | None:
    """Where `channel` reaches this person, or None if it cannot or needs no address."""
    addressed_by = _addressed_by(channel)
    value: Any
    if addressed_by == "phone":
        value = profile.phone
    elif addressed_by == "email":
        value = profile.email
    elif addressed_by == "addresses":
        value = profile.addresses.get(channel)
    else:
        # Delivered inside the bank's own app, to the user id.
        value = None
    return str(value) if value else None


def unreachable(
    channel: str,
    profile: Addressable,
    consents: Mapping[str, bool],
    *,
    marketing: bool,
    consent_modes: Mapping[str, str],
) -> Unreachable | None:
    """Why this person cannot be reached on `channel`, or None if they can."""
    if _addressed_by(channel) != "none" and address_of(channel, profile) is None:
        return "no_address"
    if not marketing:
        return None
    # A channel the policy does not mention is treated as needing consent: a bank must be
    # able to show a customer agreed before it markets to them on a new channel.
    mode = consent_modes.get(channel, "required")
    granted = consents.get(channel)
    if granted is False or (mode == "required" and granted is not True):
        return "no_consent"
    return None


def user_zone(user_timezone: str | None, fallback_timezone: str) -> ZoneInfo:
    """The user's own time zone if it is a real one, else the policy's."""
    if user_timezone:
        try:
            return ZoneInfo(user_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(fallback_timezone)


def quiet_until(at: datetime, window: PlanQuietHours, zone: ZoneInfo) -> datetime | None:
    """The UTC moment `window` opens again if `at` falls inside it in `zone`; else None.

    A window whose start is later than its end crosses midnight (21:00-08:00).
    """
    local = at.astimezone(zone)
    now = local.time()
    start, end = _time_of_day(window.start), _time_of_day(window.end)
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    opens_on = local.date() if now < end else local.date() + timedelta(days=1)
    return datetime.combine(opens_on, end, tzinfo=zone).astimezone(UTC)


def _time_of_day(value: str) -> time:
    return time.fromisoformat(value.zfill(5))


def over_cap(
    contacts: Iterable[Contact],
    *,
    journey: str,
    channel: str,
    at: datetime,
    journey_rules: Iterable[PlanFrequency],
    policy_rules: Iterable[PlanFrequency],
) -> bool:
    """Whether one more contact on `channel` would break a rule.

    Journey rules count this journey's contacts only; the business line's rules count all.
    Contacts stamped after `at` count too: another journey whose clock runs ahead has
    still reached the person, and a cap must hold whatever order journeys ask in.
    """
    every = list(contacts)
    own = [contact for contact in every if contact.journey == journey]
    checks = [(rule, own) for rule in journey_rules] + [(rule, every) for rule in policy_rules]
    for rule, pool in checks:
        if rule.channel not in (ANY_CHANNEL, channel):
            continue
        since = at - timedelta(seconds=rule.per_seconds)
        used = sum(1 for c in pool if c.at > since and rule.channel in (ANY_CHANNEL, c.channel))
        if used >= rule.max:
            return True
    return False


def needs_opt_out(channel: str, *, marketing: bool) -> bool:
    """Whether a message must say how to opt out: marketing on a channel the list marks so."""
    return marketing and channel in OPT_OUT_CHANNELS


def lacks_opt_out(body: str, pattern: str) -> bool:
    return re.search(pattern, body, flags=re.IGNORECASE) is None


def choose_locale(spec: TemplateSpec, preferred: str | None) -> str:
    """The user's locale if the template has it, else the first one the template lists."""
    if preferred is not None and preferred in spec.content:
        return preferred
    return next(iter(spec.content))


def render_content(
    spec: TemplateSpec,
    locale: str,
    context: Mapping[str, Any],
    *,
    track: Callable[[str], str] | None = None,
) -> Rendered:
    """Render one locale's subject, body and html; raises TemplateRenderError.

    `track` turns the URLs declared with `track("...")` into tracked links; the parts are
    rendered in this order, so a link's index is its first appearance in subject, body, html.
    """
    content = spec.content[locale]

    def part(text: str | None) -> str | None:
        return None if text is None else render_template(text, context, track=track)

    subject = part(content.subject)
    body = part(content.body)
    assert body is not None
    return Rendered(locale=locale, subject=subject, body=body, html=part(content.html))
