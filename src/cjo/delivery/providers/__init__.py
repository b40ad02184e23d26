"""Channel providers: one module per kind of provider, named after the kind.

The kinds are the ones the channel list names (`cjo.runtime.channels`: a channel's
`provider`), and a provider setting's `kind` picks one. The kind `http` is the module
`cjo.delivery.providers.http`, and so on. Each such module has::

    def make(settings: ProviderSettings, *, max_connections: int) -> Provider

which builds the provider from its settings, or raises ValueError if they cannot work
(the dispatcher builds every configured provider when it starts, so a wrong one stops it
there). `base` says what a provider is.
"""

from __future__ import annotations

from importlib import import_module
from typing import Protocol

from cjo.delivery.providers.base import Provider
from cjo.runtime.channels import PROVIDER_KINDS
from cjo.runtime.settings import ProviderSettings

__all__ = ["PROVIDER_KINDS", "ProviderFactory", "factory", "make_provider"]


class ProviderFactory(Protocol):
    def __call__(self, settings: ProviderSettings, *, max_connections: int) -> Provider: ...


def factory(kind: str) -> ProviderFactory:
    """The `make` of the module of `kind`; ValueError for a kind no channel names."""
    if kind not in PROVIDER_KINDS:
        raise ValueError(f"no channel is delivered by a provider of kind {kind!r}")
    made: ProviderFactory = import_module(f"{__name__}.{kind}").make
    return made


def make_provider(settings: ProviderSettings, *, max_connections: int) -> Provider:
    """The provider `settings` configure, of their kind."""
    return factory(settings.kind)(settings, max_connections=max_connections)
