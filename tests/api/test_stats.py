"""The counting rules of campaign stats and the paging of a user's journeys.

Runs are written by the real run-record activities (as the interpreter writes them), so
the figures can be checked exactly: loops, quiet-hour delays, failed expressions, holdout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import yaml

from cjo.activities.runs.campaigns import CampaignActivities
from cjo.activities.runs.journeys import (
    EnterJourneyInput,
    FinishJourneyInput,
    JourneyActivities,
    RecordStepsInput,
)
from cjo.steps.run import EndReason, StepRecord
from cjo.store.db import SessionFactory
from tests.api.support import publish
from tests.workflows.support import EXAMPLES

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def step(
    run: str, step_id: str, step_type: str, outcome: str | None, minutes: int, visit: int = 1
) -> StepRecord:
    return StepRecord(
        key=f"{run}/{step_id}/{visit}/{outcome}",
        step_id=step_id,
        step_type=step_type,
        outcome=outcome,
        at=START + timedelta(minutes=minutes),
    )


async def test_stats_follow_the_counting_rules(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    journey = await publish(db_api, "dormant_savers.yaml")
    campaign = await CampaignActivities(sessions).create(
        journey=journey["name"], business_line=journey["business_line"]
    )
    runs = JourneyActivities(sessions)

    async def enter(run: str, user: str, holdout: bool = False) -> None:
        await runs.enter(
            EnterJourneyInput(
                run_key=run,
                workflow_id=f"journey/retail/{journey['name']}/{user}",
                campaign_id=campaign.id,
                business_line="retail",
                journey=journey["name"],
                plan_version=journey["version"],
                user_id=user,
                holdout=holdout,
                at=START,
            )
        )

    await db_api.post("/v1/users/batch", json={"users": [{"id": f"u{n}"} for n in range(1, 5)]})
    for run, user, holdout in (
        ("r1", "u1", False),
        ("r2", "u2", False),
        ("r3", "u3", True),
        ("r4", "u4", True),
    ):
        await enter(run, user, holdout)

    async def finish(
        run: str, user: str, reason: EndReason, *records: StepRecord, **fields: Any
    ) -> None:
        await runs.finish(
            FinishJourneyInput(
                run_key=run,
                user_id=user,
                records=list(records),
                end_reason=reason,
                at=START + timedelta(days=12),
                **fields,
            )
        )

    converted = START + timedelta(days=2)
    await finish(
        "r1",
        "u1",
        "converted",
        step("r1", "message_test", "split", "rate_led", 0),
        step("r1", "send_rate_led", "send", "delayed", 1),  # quiet hours: not an outcome
        step("r1", "send_rate_led", "send", "sent", 400),
        # A loop through the same step: the run entered it once, with two outcomes.
        step("r1", "await_login", "wait_for", "timeout", 500),
        step("r1", "await_login", "wait_for", "event", 900, visit=2),
        variant="rate_led",
        converted_at=converted,
    )
    await runs.record(
        RecordStepsInput(
            run_key="r2",
            user_id="u2",
            records=[
                step("r2", "message_test", "split", "care_led", 0),
                step("r2", "send_care_led", "send", "sent", 1),
                step("r2", "goal", "expression", "error", 2),  # belongs to no step
            ],
            current_step="await_login",
            variant="care_led",
        )
    )
    await finish("r3", "u3", "completed", converted_at=converted)
    await finish("r4", "u4", "completed")

    answer = await db_api.get(f"/v1/campaigns/{campaign.id}/stats")
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    steps = stats["steps"]
    assert set(steps) == {
        "message_test",
        "send_rate_led",
        "send_care_led",
        "await_login",
        "reminder_inbox",
        "await_login_after_reminder",
        "still_dormant",
        "mark_reactivated",
    }
    # In the order the journey lists them, not the order of the Plan's (jsonb) keys.
    document = yaml.safe_load_all((EXAMPLES / "dormant_savers.yaml").read_text("utf-8"))
    spec = next(d["spec"] for d in document if d and d.get("kind") == "Journey")
    assert list(steps) == [step["id"] for step in spec["steps"]]
    assert steps["message_test"] == {
        "entered": 2,
        "waiting": 0,
        "outcomes": {"rate_led": 1, "care_led": 1},
    }
    assert steps["send_rate_led"] == {"entered": 1, "waiting": 0, "outcomes": {"sent": 1}}
    assert steps["await_login"] == {
        "entered": 1,
        "waiting": 1,
        "outcomes": {"timeout": 1, "event": 1},
    }
    assert steps["reminder_inbox"] == {"entered": 0, "waiting": 0, "outcomes": {}}
    assert stats["ended"] == {"converted": 1, "completed": 2}
    assert stats["variants"] == {
        "care_led": {"entrants": 1, "conversions": 0, "rate": 0.0},
        "rate_led": {"entrants": 1, "conversions": 1, "rate": 1.0},
    }
    assert stats["holdout"] == {"entrants": 2, "conversions": 1, "rate": 0.5}

    (run,) = (await db_api.get("/v1/users/u1/journeys")).json()["items"]
    assert [(e["step"], e["outcome"]) for e in run["path"]] == [
        ("message_test", "rate_led"),
        ("send_rate_led", "delayed"),
        ("send_rate_led", "sent"),
        ("await_login", "timeout"),
        ("await_login", "event"),
    ]
    assert run["end_reason"] == "converted" and run["variant"] == "rate_led"
    (waiting,) = (await db_api.get("/v1/users/u2/journeys")).json()["items"]
    assert waiting["status"] == "active" and waiting["current_step"] == "await_login"
    assert "goal" not in {entry["step"] for entry in waiting["path"]}


async def test_a_users_journeys_page_newest_first(
    db_api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await db_api.put("/v1/users/u1", json={})
    runs = JourneyActivities(sessions)
    for n in range(5):
        await runs.enter(
            EnterJourneyInput(
                run_key=f"journey/retail/j{n}/u1#1",
                workflow_id=f"journey/retail/j{n}/u1",
                business_line="retail",
                journey=f"j{n}",
                plan_version="v1",
                user_id="u1",
                at=START + timedelta(days=n % 3),  # ties on time are ordered by run
            )
        )
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await db_api.get("/v1/users/u1/journeys", params=params)).json()
        seen.extend(run["journey"] for run in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["j2", "j4", "j1", "j3", "j0"]
