"""The channels CJO reaches customers on, and each one's facts: the one list.

Adding a channel is one line in `CHANNELS` (docs/recipes/add-a-channel.md). Everything
else reads this list: the settings (`CJO_PROVIDERS`), the DSL's types and JSON Schema,
the default ContactPolicy's consent modes, profiles' `addresses`, the send step's address
and consent rules, `cjo simulate`, the demo's stand-in providers and the dispatcher.

A channel's `provider` names the kind of provider that delivers it: the module
`cjo/delivery/providers/<kind>.py`. The kinds are the ones some channel names, so a new
kind is that module plus the line of the channel it delivers.

This module imports nothing of CJO, so every layer may read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

# Where a message on the channel is addressed: the profile's `phone` or `email`, its
# `addresses[<channel>]` (a device token, an open id, a URL), or nowhere ("none": the
# bank's own app, which knows the user id).
AddressedBy = Literal["phone", "email", "addresses", "none"]
ConsentMode = Literal["required", "implied"]


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """What CJO needs to know about one channel."""

    name: str
    address: AddressedBy
    # The kind of provider that delivers it: `cjo/delivery/providers/<provider>.py`. The
    # demo's stand-ins serve it with that kind; CJO_PROVIDERS may name another.
    provider: str
    # Its mode in the default ContactPolicy. None leaves it out of the default, and the
    # send step treats a channel the policy does not name as `required`. The default is
    # part of every Plan compiled without a ContactPolicy: naming a mode for a channel
    # gives those journeys a new version.
    consent: ConsentMode | None = None
    # A marketing message on it must say how to opt out (the policy's `optOutPattern`).
    opt_out: bool = False


# The one list. The order is the order of the DSL's JSON Schema enums.
CHANNELS: tuple[ChannelFacts, ...] = (
    ChannelFacts("sms", address="phone", provider="http", consent="required", opt_out=True),
    ChannelFacts("email", address="email", provider="smtp", consent="required"),
    ChannelFacts("push", address="addresses", provider="http", consent="required"),
    ChannelFacts("inbox", address="none", provider="inbox", consent="implied"),
    ChannelFacts("wechat", address="addresses", provider="http", consent="required"),
    ChannelFacts("call", address="phone", provider="http", consent="required"),
    ChannelFacts("webhook", address="addresses", provider="http"),
)

# A frequency rule's `channel: any` counts contacts on every channel.
ANY_CHANNEL = "any"
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")


def _checked(channels: tuple[ChannelFacts, ...]) -> tuple[ChannelFacts, ...]:
    """The list, or a ValueError naming the line that is wrong (at import: CJO won't start)."""
    seen: set[str] = set()
    for facts in channels:
        if not _NAME.match(facts.name) or facts.name == ANY_CHANNEL or facts.name in seen:
            raise ValueError(
                f"channel {facts.name!r}: a channel is a new name of lowercase letters, "
                f"digits and '_' (2-31), and not {ANY_CHANNEL!r}"
            )
        if not _NAME.match(facts.provider):
            raise ValueError(
                f"channel {facts.name!r}: provider {facts.provider!r} is no module name"
            )
        if facts.address not in get_args(AddressedBy):
            raise ValueError(f"channel {facts.name!r}: address {facts.address!r} is unknown")
        if facts.consent is not None and facts.consent not in get_args(ConsentMode):
            raise ValueError(f"channel {facts.name!r}: consent {facts.consent!r} is unknown")
        seen.add(facts.name)
    return channels


_checked(CHANNELS)

CHANNEL_NAMES: tuple[str, ...] = tuple(facts.name for facts in CHANNELS)
BY_NAME: Mapping[str, ChannelFacts] = {facts.name: facts for facts in CHANNELS}
# The kinds of provider, in the order channels first name them.
PROVIDER_KINDS: tuple[str, ...] = tuple(dict.fromkeys(facts.provider for facts in CHANNELS))
# Channels addressed through the profile's `addresses` map: its allowed keys.
ADDRESS_BOOK_CHANNELS: tuple[str, ...] = tuple(
    facts.name for facts in CHANNELS if facts.address == "addresses"
)
OPT_OUT_CHANNELS: frozenset[str] = frozenset(facts.name for facts in CHANNELS if facts.opt_out)


def default_consent() -> dict[str, ConsentMode]:
    """The consent modes of the default ContactPolicy (a new dict each time)."""
    return {facts.name: facts.consent for facts in CHANNELS if facts.consent is not None}


# Literal types for pydantic (validation, JSON Schema enums, OpenAPI), built from the
# list. mypy cannot read a Literal built at run time, so it sees `str`: the values are
# checked where they enter (settings, DSL, API), not by the type checker.
if TYPE_CHECKING:
    Channel: TypeAlias = str
    ChannelOrAny: TypeAlias = str
    AddressBookChannel: TypeAlias = str
    ProviderKind: TypeAlias = str
else:
    Channel = Literal[CHANNEL_NAMES]
    ChannelOrAny = Literal[(*CHANNEL_NAMES, ANY_CHANNEL)]
    AddressBookChannel = Literal[ADDRESS_BOOK_CHANNELS]
    ProviderKind = Literal[PROVIDER_KINDS]

__all__ = [
    "ADDRESS_BOOK_CHANNELS",
    "ANY_CHANNEL",
    "BY_NAME",
    "CHANNELS",
    "CHANNEL_NAMES",
    "OPT_OUT_CHANNELS",
    "PROVIDER_KINDS",
    "AddressBookChannel",
    "AddressedBy",
    "Channel",
    "ChannelFacts",
    "ChannelOrAny",
    "ConsentMode",
    "ProviderKind",
    "default_consent",
]
