"""A/B results with lift against the holdout, and who is at or past a step.

Runs are written by the real run-record activities (as the interpreter writes them), so
the figures are known exactly. The lift's interval is checked against the published
values of Newcombe (1998, Table II, method 10) and against the formula worked by hand.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cjo.activities.runs.campaigns import CampaignActivities
from cjo.activities.runs.journeys import (
    EnterJourneyInput,
    FinishJourneyInput,
    JourneyActivities,
    RecordStepsInput,
)
from cjo.control.stats import lift
from cjo.steps.run import StepRecord
from cjo.store.db import SessionFactory
from tests.api.conftest import ApiClients
from tests.api.support import problem, publish

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
Z = 1.959963984540054


class Runs:
    """Writes one campaign's runs through the journey activities."""

    def __init__(self, sessions: SessionFactory, journey: dict[str, Any], campaign: str) -> None:
        self.activities = JourneyActivities(sessions)
        self.journey = journey
        self.campaign = campaign
        self.made = 0

    async def add(
        self,
        *,
        variant: str | None = None,
        holdout: bool = False,
        converted: bool = False,
        steps: tuple[tuple[str, str, str], ...] = (),
        at_step: str | None = None,
        user: str | None = None,
    ) -> str:
        """A run; ended unless `at_step` leaves it waiting there. Its user id."""
        self.made += 1
        user = user or f"u{self.made:03d}"
        run = f"{self.campaign}/{user}#1"
        await self.activities.enter(
            EnterJourneyInput(
                run_key=run,
                workflow_id=f"journey/retail/{self.journey['name']}/{user}",
                campaign_id=self.campaign,
                business_line="retail",
                journey=self.journey["name"],
                plan_version=self.journey["version"],
                user_id=user,
                holdout=holdout,
                at=START,
            )
        )
        records = [
            StepRecord(
                key=f"{run}/{step}/{n}",
                step_id=step,
                step_type=kind,
                outcome=outcome,
                at=START + timedelta(minutes=n),
            )
            for n, (step, kind, outcome) in enumerate(steps)
        ]
        converted_at = START + timedelta(days=1) if converted else None
        if at_step is not None:
            await self.activities.record(
                RecordStepsInput(
                    run_key=run,
                    user_id=user,
                    records=records,
                    current_step=at_step,
                    variant=variant,
                    converted_at=converted_at,
                )
            )
        else:
            await self.activities.finish(
                FinishJourneyInput(
                    run_key=run,
                    user_id=user,
                    records=records,
                    end_reason="converted" if converted else "completed",
                    variant=variant,
                    converted_at=converted_at,
                    at=START + timedelta(days=12),
                )
            )
        return user


async def campaign_runs(
    sessions: SessionFactory, http: httpx.AsyncClient
) -> tuple[str, Runs, dict[str, Any]]:
    journey = await publish(http, "dormant_savers.yaml")
    campaign = await CampaignActivities(sessions).create(
        journey=journey["name"], business_line=journey["business_line"]
    )
    return campaign.id, Runs(sessions, journey, campaign.id), journey


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The Wilson score interval, written out as in Newcombe (1998), eq. (3)."""
    p, n, z2 = successes / trials, trials, Z * Z
    root = Z * math.sqrt(z2 + 4 * n * p * (1 - p))
    return (2 * n * p + z2 - root) / (2 * (n + z2)), (2 * n * p + z2 + root) / (2 * (n + z2))


@pytest.mark.parametrize(
    ("variant", "holdout", "expected"),
    [
        # Newcombe (1998), Table II, method 10: the hybrid score interval.
        ((56, 70), (48, 80), (0.2, 0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.6, 0.1705, 0.8090)),
        ((6, 7), (2, 7), (0.5714, 0.0582, 0.8062)),
        ((5, 56), (0, 29), (0.0893, -0.0381, 0.1926)),
        # Nothing converted anywhere: an honest "somewhere within ±0.28", not a sure zero.
        ((0, 10), (0, 10), (0.0, -0.2775, 0.2775)),
    ],
)
def test_lift_matches_newcombes_published_intervals(
    variant: tuple[int, int], holdout: tuple[int, int], expected: tuple[float, float, float]
) -> None:
    found = lift(variant[0], variant[1], holdout[0], holdout[1])
    assert found is not None
    assert (found.value, found.ci_low, found.ci_high) == pytest.approx(expected, abs=1e-4)


def test_no_lift_without_entrants_on_either_side() -> None:
    assert lift(0, 0, 3, 10) is None
    assert lift(3, 10, 0, 0) is None


async def test_variants_holdout_and_lift_through_the_api(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    viewer = await db_app.client("viewer", ["retail"])
    campaign, runs, _ = await campaign_runs(sessions, admin)
    split = ("message_test", "split")
    for n in range(10):
        await runs.add(variant="rate_led", converted=n < 9, steps=((*split, "rate_led"),))
    for n in range(7):
        await runs.add(variant="care_led", converted=n < 6, steps=((*split, "care_led"),))
    for n in range(10):
        await runs.add(holdout=True, converted=n < 3)

    stats = (await viewer.get(f"/v1/campaigns/{campaign}/stats")).json()
    assert stats["variants"] == {
        "care_led": {"entrants": 7, "conversions": 6, "rate": 0.8571},
        "rate_led": {"entrants": 10, "conversions": 9, "rate": 0.9},
    }
    assert stats["holdout"] == {"entrants": 10, "conversions": 3, "rate": 0.3}
    assert set(stats["lift"]) == {"rate_led", "care_led"}
    rate_led = stats["lift"]["rate_led"]
    assert (rate_led["value"], rate_led["ci_low"], rate_led["ci_high"]) == pytest.approx(
        (0.6, 0.1705, 0.8090), abs=1e-4
    )
    # By hand: d = 6/7 - 3/10; L = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), U likewise.
    p1, p2 = 6 / 7, 3 / 10
    (l1, u1), (l2, u2) = wilson(6, 7), wilson(3, 10)
    d = p1 - p2
    by_hand = (
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )
    care_led = stats["lift"]["care_led"]
    assert (care_led["value"], care_led["ci_low"], care_led["ci_high"]) == pytest.approx(
        by_hand, abs=1e-4
    )
    # Worked on paper: Wilson (0.4869, 0.9743) and (0.1078, 0.6032); d = 0.5571.
    assert (care_led["ci_low"], care_led["ci_high"]) == pytest.approx((0.0786, 0.7823), abs=1e-4)
    problem(
        await (await db_app.client("viewer", ["wealth"])).get(f"/v1/campaigns/{campaign}/stats"),
        404,
    )

    # No holdout entrants: nothing to compare a variant with, so no lift.
    other, other_runs, _ = await campaign_runs(sessions, admin)
    await other_runs.add(variant="rate_led", converted=True, user="solo")
    alone = (await viewer.get(f"/v1/campaigns/{other}/stats")).json()
    assert alone["holdout"]["entrants"] == 0 and alone["lift"] == {}


async def test_who_is_at_or_past_a_step_page_by_page(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    admin = await db_app.client("admin")
    viewer = await db_app.client("viewer", ["retail"])
    campaign, runs, _ = await campaign_runs(sessions, admin)
    sent = ("send_rate_led", "send", "sent")
    tested = ("message_test", "split", "rate_led")
    waiting = [await runs.add(variant="rate_led", steps=(tested, sent), at_step="await_login")]
    waiting.append(await runs.add(variant="rate_led", steps=(tested, sent), at_step="await_login"))
    waiting.append(await runs.add(variant="rate_led", steps=(tested, sent), at_step="await_login"))
    timed_out = await runs.add(
        variant="rate_led", steps=(tested, sent, ("await_login", "wait_for", "timeout"))
    )
    # Looped: its latest outcome at the step is the one listed.
    looped = await runs.add(
        variant="rate_led",
        steps=(
            tested,
            sent,
            ("await_login", "wait_for", "timeout"),
            ("await_login", "wait_for", "event"),
        ),
    )
    # Held by quiet hours at the send: it has not passed it.
    delayed = await runs.add(
        variant="rate_led",
        steps=(tested, ("send_rate_led", "send", "delayed")),
        at_step="send_rate_led",
    )
    base = f"/v1/campaigns/{campaign}/steps"

    async def every(step: str, state: str, limit: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(20):
            params: dict[str, Any] = {"state": state, "limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = (await viewer.get(f"{base}/{step}/users", params=params)).json()
            assert len(page["items"]) <= limit and page["step"] == step
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("paging never ended")

    at = await every("await_login", "at", 2)
    assert [item["user_id"] for item in at] == sorted(waiting)
    assert {item["status"] for item in at} == {"active"} and at[0]["outcome"] is None
    passed = await every("await_login", "passed", 1)
    assert [(i["user_id"], i["outcome"], i["status"]) for i in passed] == [
        (timed_out, "timeout", "ended"),
        (looped, "event", "ended"),
    ]
    assert passed[1]["at"] == (START + timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
    past_send = await every("send_rate_led", "passed", 2)
    assert {item["user_id"] for item in past_send} == {*waiting, timed_out, looped}
    assert delayed not in {item["user_id"] for item in past_send}
    assert [i["user_id"] for i in await every("send_rate_led", "at", 50)] == [delayed]
    assert await every("reminder_inbox", "at", 50) == []

    problem(await viewer.get(f"{base}/no_such_step/users"), 404)
    problem(await viewer.get(f"{base}/await_login/users", params={"state": "near"}), 422)
    problem(await viewer.get(f"{base}/await_login/users", params={"limit": 501}), 422)
    problem(await viewer.get("/v1/campaigns/nope/steps/await_login/users"), 404)
    outsider = await db_app.client("viewer", ["credit-card"])
    problem(await outsider.get(f"{base}/await_login/users"), 404)
