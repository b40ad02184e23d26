"""Helpers shared by tests."""

from __future__ import annotations

from cjo.activities.calls.catalog import default_registry
from cjo.dsl import InMemoryLookup


def registered_lookup() -> InMemoryLookup:
    """An in-memory lookup that knows the activities CJO ships, as the CLI's does."""
    return InMemoryLookup.of(activities=default_registry().declarations())
