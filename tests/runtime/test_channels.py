"""The channel list is the one place channels are spelled: every other place reads it.

`tests/delivery/test_adding_a_channel.py` adds a channel to a copy of CJO and follows it
everywhere; these are the quick checks, on CJO as it is.
"""

from __future__ import annotations

import typing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

import cjo.delivery.providers
from cjo.activities.messaging._contact_rules import address_of, needs_opt_out, unreachable
from cjo.activities.people.profiles import ConsentChange, ProfileInput
from cjo.delivery.providers import factory, make_provider
from cjo.demo.standins import Delivered, SandboxProviders
from cjo.dsl import json_schema
from cjo.dsl._resources import DEFAULT_CONTACT_POLICY, ContactPolicySpec
from cjo.runtime import channels
from cjo.runtime.channels import (
    ADDRESS_BOOK_CHANNELS,
    CHANNEL_NAMES,
    CHANNELS,
    PROVIDER_KINDS,
    ChannelFacts,
)
from cjo.runtime.settings import ProviderSettings, Settings
from cjo.simulate.scenario import read_user
from cjo.store.schema import Profile

ADDRESS = {"phone": "13800138000", "email": "li@example.com", "addresses": "token-1"}
PROVIDERS = Path(cjo.delivery.providers.__file__).parent
# A channel and a kind no one will add (the recipe's tests run these checks with theirs).
UNKNOWN = "carrier_pigeon"
# The kinds CJO ships, which the demo has stand-ins for.
STAND_IN_KINDS = ("http", "smtp", "inbox")


def test_the_types_are_the_list() -> None:
    assert typing.get_args(channels.Channel) == CHANNEL_NAMES
    assert typing.get_args(channels.ChannelOrAny) == (*CHANNEL_NAMES, "any")
    assert typing.get_args(channels.ProviderKind) == PROVIDER_KINDS
    assert typing.get_args(channels.AddressBookChannel) == ADDRESS_BOOK_CHANNELS


def test_the_json_schema_lists_the_channels_in_order() -> None:
    defs = json_schema()["$defs"]
    assert defs["TemplateSpec"]["properties"]["channel"]["enum"] == list(CHANNEL_NAMES)
    assert defs["SendStep"]["properties"]["channel"]["enum"] == list(CHANNEL_NAMES)
    assert defs["FrequencyRule"]["properties"]["channel"]["enum"] == [*CHANNEL_NAMES, "any"]
    consent = defs["ContactPolicySpec"]["properties"]["consent"]
    assert consent["propertyNames"]["enum"] == list(CHANNEL_NAMES)


def test_the_default_contact_policy_takes_each_channels_consent_mode() -> None:
    named = {c.name: c.consent for c in CHANNELS if c.consent is not None}
    assert DEFAULT_CONTACT_POLICY.consent == named == channels.default_consent()
    assert ContactPolicySpec().consent is not ContactPolicySpec().consent  # not shared
    # webhook names none: a marketing webhook needs the customer's explicit consent.
    assert "webhook" not in DEFAULT_CONTACT_POLICY.consent


@pytest.mark.parametrize("facts", CHANNELS, ids=lambda c: c.name)
def test_each_channel_is_known_everywhere(facts: ChannelFacts) -> None:
    name = facts.name
    # settings: a provider of the channel's kind is configurable for it
    settings = Settings(providers={"*": {name: {"kind": facts.provider, "url": "http://x/"}}})
    assert settings.provider("retail", name) is not None
    # profiles and consents
    assert list(ConsentChange(user_id="u", consents={name: True}, source="t", at=_now()).consents)
    if facts.address == "addresses":
        assert ProfileInput(id="u", addresses={name: "token-1"}).addresses == {name: "token-1"}
    else:
        with pytest.raises(ValidationError):
            ProfileInput(id="u", addresses={name: "token-1"})
    # the send step's rules: where the address is, whether it needs one
    profile = Profile(id="u", phone="13800138000", email="li@example.com")
    profile.addresses = {name: "token-1"}
    found = address_of(name, profile)
    assert found == ADDRESS.get(facts.address)
    no_address = Profile(id="u")
    expected = None if facts.address == "none" else "no_address"
    assert unreachable(name, no_address, {}, marketing=False, consent_modes={}) == expected
    assert needs_opt_out(name, marketing=True) is facts.opt_out
    assert needs_opt_out(name, marketing=False) is False
    # the demo's stand-ins serve it with its kind, if they have that kind
    stand_in = SandboxProviders(1, 2, "s", Delivered()).providers()["*"].get(name)
    if facts.provider in STAND_IN_KINDS:
        assert stand_in is not None and stand_in.kind == facts.provider
    else:
        assert stand_in is None


def test_a_simulated_profile_without_consents_consents_to_every_channel(tmp_path: Path) -> None:
    path = tmp_path / "user.json"
    path.write_text('{"id": "u-1"}', encoding="utf-8")
    assert read_user(path).consents == dict.fromkeys(CHANNEL_NAMES, True)


def test_settings_refuse_a_channel_or_a_kind_the_list_lacks() -> None:
    with pytest.raises(ValidationError, match=UNKNOWN):
        Settings(providers={"*": {UNKNOWN: {"kind": "http"}}})
    with pytest.raises(ValidationError, match="kind"):
        ProviderSettings(kind=UNKNOWN)
    assert ProviderSettings(kind="http", options={"region": "cn"}).options == {"region": "cn"}


def test_the_provider_modules_are_the_kinds() -> None:
    """Each kind a channel names has its module with a `make`, and no module is left over."""
    modules = {path.stem for path in PROVIDERS.glob("*.py")} - {"__init__", "base"}
    assert modules == set(PROVIDER_KINDS)
    for kind in PROVIDER_KINDS:
        made = factory(kind)
        assert callable(made) and made.__module__ == f"cjo.delivery.providers.{kind}"


@pytest.mark.parametrize("kind", STAND_IN_KINDS)
async def test_each_shipped_kind_makes_its_provider(kind: str) -> None:
    settings = ProviderSettings(kind=kind, url="http://127.0.0.1:9/", secret=SecretStr("s"))
    provider = make_provider(settings, max_connections=2)
    try:
        assert type(provider).__module__ == f"cjo.delivery.providers.{kind}"
    finally:
        await provider.aclose()


def test_a_kind_no_channel_names_has_no_provider() -> None:
    with pytest.raises(ValueError, match=UNKNOWN):
        factory(UNKNOWN)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "sms"}, "'sms'"),
        ({"name": "any"}, "'any'"),
        ({"name": "Pigeon"}, "'Pigeon'"),
        ({"provider": "../http"}, "provider"),
        ({"address": "fax"}, "address"),
        ({"consent": "assumed"}, "consent"),
    ],
)
def test_a_wrong_line_is_refused_at_import(change: dict[str, str], problem: str) -> None:
    wrong = replace(ChannelFacts(UNKNOWN, address="addresses", provider="http"), **change)
    with pytest.raises(ValueError, match=problem):
        channels._checked((*CHANNELS, wrong))


def _now() -> datetime:
    return datetime.now(UTC)
