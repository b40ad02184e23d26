"""Every activity CJO ships, registered on import."""

from __future__ import annotations

from cjo.activities.calls import onboarding
from cjo.activities.calls.registry import REGISTRY, ActivityRegistry

BUILT_IN_MODULES = (onboarding,)


def default_registry() -> ActivityRegistry:
    return REGISTRY
