"""Publishing bundles: versions by content, plans stored, and the lookup the DSL resolves in."""

from __future__ import annotations

from pathlib import Path

from cjo.activities.calls.catalog import default_registry
from cjo.control.resources import ResourceActivities
from cjo.store.db import SessionFactory
from tests.dsl.test_compile import BUNDLE

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def activities(sessions: SessionFactory) -> ResourceActivities:
    return ResourceActivities(sessions, default_registry())


async def test_apply_stores_each_document_once_per_content(sessions: SessionFactory) -> None:
    resources = activities(sessions)
    first = await resources.apply(BUNDLE, file="bundle.yaml", actor="ops@example")
    assert first.valid
    assert sorted((a.kind, a.name, a.revision, a.changed) for a in first.applied) == [
        ("Benefit", "cashback-20", 1, True),
        ("Journey", "card-activation", 1, True),
        ("Template", "card-welcome", 1, True),
    ]
    again = await resources.apply(BUNDLE, file="bundle.yaml")
    assert [a.changed for a in again.applied] == [False, False, False]
    assert [a.version for a in again.applied] == [a.version for a in first.applied]

    changed = await resources.apply(BUNDLE.replace("value: 20,", "value: 25,"), file="b.yaml")
    by_kind = {a.kind: a for a in changed.applied}
    assert by_kind["Benefit"].changed and by_kind["Benefit"].revision == 2
    # The journey's plan pins the benefit, so its plan changed too: a new journey version.
    assert by_kind["Journey"].changed and by_kind["Journey"].revision == 2
    assert not by_kind["Template"].changed

    history = await resources.versions("Benefit", "credit-card", "cashback-20")
    assert [v.revision for v in history] == [1, 2]
    assert history[0].created_by == "ops@example"
    assert "value: 20" in (history[0].source or "")


async def test_reapplying_an_old_version_makes_it_current(sessions: SessionFactory) -> None:
    resources = activities(sessions)
    original = await resources.apply(BUNDLE)
    await resources.apply(BUNDLE.replace("value: 20,", "value: 25,"))
    reverted = await resources.apply(BUNDLE)
    benefit = next(a for a in reverted.applied if a.kind == "Benefit")
    assert benefit.changed and benefit.revision == 1
    assert benefit.version == next(a for a in original.applied if a.kind == "Benefit").version
    head = await resources.get("Benefit", "credit-card", "cashback-20")
    assert head is not None and head.document["spec"]["value"] == 20


async def test_journey_plans_are_stored_and_read_back(sessions: SessionFactory) -> None:
    resources = activities(sessions)
    outcome = await resources.apply(BUNDLE)
    journey = next(a for a in outcome.applied if a.kind == "Journey")
    plan = await resources.journey_plan("credit-card", "card-activation")
    assert plan is not None and plan.version == journey.version
    assert plan.resources.benefits["cashback-20"].spec.value == 20
    assert await resources.journey_plan("credit-card", "missing") is None


async def test_published_resources_resolve_references_in_later_bundles(
    sessions: SessionFactory,
) -> None:
    resources = activities(sessions)
    journey, rest = BUNDLE.split("---\n", 1)
    alone = await resources.apply(journey, file="journey.yaml")
    assert not alone.valid and {d.code for d in alone.diagnostics} == {"E220"}
    assert alone.applied == []
    assert (await resources.apply(rest, file="resources.yaml")).valid
    later = await resources.apply(journey, file="journey.yaml")
    assert later.valid
    assert [(a.kind, a.changed) for a in later.applied] == [("Journey", True)]


async def test_invalid_bundle_stores_nothing(sessions: SessionFactory) -> None:
    resources = activities(sessions)
    outcome = await resources.apply(BUNDLE.replace("timeout: 3d", "timeout: soon"))
    assert not outcome.valid
    assert outcome.diagnostics[0].code == "E110"
    assert await resources.get("Benefit", "credit-card", "cashback-20") is None


async def test_every_example_applies(sessions: SessionFactory) -> None:
    resources = activities(sessions)
    for example in EXAMPLES:
        outcome = await resources.apply(example.read_text(encoding="utf-8"), file=example.name)
        assert outcome.valid, [d.format_text() for d in outcome.diagnostics]
        assert any(a.kind == "Journey" for a in outcome.applied)
