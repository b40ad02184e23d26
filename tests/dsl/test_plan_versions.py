"""A journey's version is its Plan's hash, and campaigns are pinned to versions: the same
journey must compile to the same version for as long as the Plan's format stays 1.

The versions below were taken before the Plan was typed; a change to the Plan's models
that changes any of them changes what running campaigns are pinned to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cjo.activities.calls.catalog import default_registry
from cjo.dsl import InMemoryLookup, Plan, compile_bundle

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = {
    ("bench/journeys.yaml", "bench-flow"): "81c31520fb9b7cae",
    ("bench/journeys.yaml", "bench-parked"): "38be4194a8c6db9e",
    ("examples/abandoned_fund_purchase.yaml", "abandoned-fund-purchase"): "5a1d296b74b2f611",
    ("examples/birthday_benefit.yaml", "birthday-benefit"): "b7743f35b05aad31",
    ("examples/card_activation.yaml", "card-activation"): "734ad1cb93cbe3bc",
    ("examples/demo/demo_journeys.yaml", "card-activation-demo"): "384cf67f5bc81495",
    ("examples/demo/demo_journeys.yaml", "dormant-savers-demo"): "066b39661d5f48c6",
    ("examples/dormant_savers.yaml", "dormant-savers-reactivation"): "108cca8eb273e3b0",
    ("examples/mobile_onboarding.yaml", "mobile-onboarding"): "adb76ed3bd8e20c2",
    ("examples/push_then_sms.yaml", "salary-day-offer"): "71f9c3a90b06c737",
    ("examples/wealth_funnel.yaml", "wealth-product-funnel"): "c8d1c5e3cba6327b",
    ("tests/workflows/bundles/continue_chain.yaml", "replay-continue"): "c22009bf6a780cf9",
    ("tests/workflows/bundles/every_step.yaml", "replay-every-step"): "5303fba39d3ba9bf",
    ("tests/workflows/bundles/opt_out.yaml", "statement-season"): "3af53d96025e6d49",
    ("tests/workflows/bundles/paused.yaml", "paused-send"): "efd15cec9c022e1d",
    ("tests/workflows/bundles/restart.yaml", "restart-proof"): "b1069a4c7782632d",
}


def _plans(file: str) -> dict[str, Plan]:
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    return compile_bundle((ROOT / file).read_text(encoding="utf-8"), file, lookup).plans


@pytest.mark.parametrize(("file", "journey"), sorted(VERSIONS), ids=lambda part: str(part))
def test_each_journey_keeps_its_version(file: str, journey: str) -> None:
    assert _plans(file)[journey].version == VERSIONS[(file, journey)]


@pytest.mark.parametrize(("file", "journey"), sorted(VERSIONS), ids=lambda part: str(part))
def test_a_plan_reads_back_from_its_json_unchanged(file: str, journey: str) -> None:
    """As stored in PostgreSQL and carried in workflow inputs: JSON in, the same Plan out."""
    plan = _plans(file)[journey]
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert Plan.model_validate(plan.model_dump(mode="json")) == plan
