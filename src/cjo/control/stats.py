"""Read-only figures: how a campaign's runs went, step by step, and one user's runs.

Everything is counted in PostgreSQL from `enrolments` and `step_log`, grouped down to a
handful of rows per campaign before it reaches Python, so a campaign of millions costs
two index scans, not a million objects. Each answer is read in one REPEATABLE READ,
READ ONLY transaction, so its figures agree with each other (no run counted as waiting
at a step and as ended at once).

Rules for counting:

- `entered` at a step: distinct runs that logged the step (a loop counts a run once).
- `outcomes`: how often the step ended with each outcome. A `delayed` row (quiet hours
  put a send off) is not an outcome, and `expression` rows (a `where` that failed to
  evaluate) belong to no step; neither is counted.
- `waiting`: runs not ended whose current step it is now.
- conversions: runs with `converted_at`; a variant's figures leave the holdout out.
- `lift` of a variant: its conversion rate minus the holdout's (an absolute difference:
  0.03 is three percentage points), with a 95% confidence interval by Newcombe's hybrid
  score method (the difference of two Wilson score intervals, Newcombe 1998, method 10).
  Unlike the textbook Wald interval it stays within [-1, 1] and stays honest at zero
  conversions or tiny groups: 0 of 10 against 0 of 10 is "somewhere in ±0.28", not a
  certain zero. A variant has a lift only when it and the holdout both have entrants.

Who is at or passed a step is listed page by page, ordered by user and run.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities._base import ActivityError
from cjo.activities.runs.campaigns import UnknownCampaignError
from cjo.store.db import SessionFactory, transaction

__all__ = [
    "CampaignStatsInput",
    "CampaignStatsResult",
    "Conversion",
    "JourneyRun",
    "Lift",
    "PathEntry",
    "RunPosition",
    "StatsActivities",
    "StepCounts",
    "StepUser",
    "StepUserPosition",
    "StepUsersInput",
    "StepUsersResult",
    "UnknownStepError",
    "UserJourneysInput",
    "UserJourneysResult",
]

# Rates are shown to people and compared across variants; more digits are noise.
RATE_DIGITS = 4
NOT_AN_OUTCOME = "delayed"
NOT_A_STEP = "expression"
# The normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054


class UnknownStepError(ActivityError):
    """The step is not one of the campaign's journey version."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepCounts(_Model):
    entered: int = 0
    waiting: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)


class Conversion(_Model):
    """`rate` is conversions / entrants, or None while there are no entrants."""

    entrants: int = 0
    conversions: int = 0
    rate: float | None = None


class Lift(_Model):
    """A variant's conversion rate minus the holdout's, with its 95% confidence interval."""

    value: float
    ci_low: float
    ci_high: float


class CampaignStatsInput(_Model):
    campaign_id: str


class CampaignStatsResult(_Model):
    """Every step of the campaign's pinned journey appears, with zeros until reached."""

    campaign_id: str
    steps: dict[str, StepCounts]
    ended: dict[str, int]
    variants: dict[str, Conversion]
    holdout: Conversion
    lift: dict[str, Lift] = Field(default_factory=dict)


class RunPosition(_Model):
    """Where a page of a user's runs ended (runs are listed newest first)."""

    entered_at: datetime
    run_key: str


class UserJourneysInput(_Model):
    user_id: str
    limit: int = Field(default=50, ge=1, le=500)
    after: RunPosition | None = None


class PathEntry(_Model):
    step: str
    type: str
    outcome: str | None
    at: datetime


class JourneyRun(_Model):
    run_key: str
    journey: str
    business_line: str
    campaign_id: str | None
    plan_version: str
    status: str
    current_step: str | None
    end_reason: str | None
    entered_at: datetime
    ended_at: datetime | None
    converted_at: datetime | None
    variant: str | None
    holdout: bool
    path: list[PathEntry]


StepUsersState = Literal["at", "passed"]


class StepUserPosition(_Model):
    """Where a page of a step's users ended."""

    user_id: str
    run_key: str


class StepUsersInput(_Model):
    """`at`: runs waiting at the step now; `passed`: runs that went through it."""

    campaign_id: str
    step_id: str
    state: StepUsersState = "at"
    limit: int = Field(default=50, ge=1, le=500)
    after: StepUserPosition | None = None


class StepUser(_Model):
    """`outcome` and `at`: the run's latest outcome at the step and when (for `passed`)."""

    user_id: str
    run_key: str
    status: str
    current_step: str | None
    entered_at: datetime
    outcome: str | None = None
    at: datetime | None = None


class StepUsersResult(_Model):
    users: list[StepUser]
    next: StepUserPosition | None = None


class UserJourneysResult(_Model):
    """`next` is where the following page starts, or None on the last page."""

    runs: list[JourneyRun]
    next: RunPosition | None = None


class StatsActivities:
    """Campaign figures and a user's runs, read from the run records.

    Only the API reads them: they are plain methods, not Temporal activities (no worker
    registers them, and no journey reads figures)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def campaign_stats(self, data: CampaignStatsInput) -> CampaignStatsResult:
        params = {"campaign": data.campaign_id}
        async with _snapshot(self._sessions) as connection:
            plan_steps = await connection.execute(_PLAN_STEPS, params)
            found = plan_steps.all()
            if not found:
                raise UnknownCampaignError(f"no campaign {data.campaign_id}")
            steps: dict[str, dict[str, Any]] = {
                str(row.step_id): _empty_step() for row in found if row.step_id is not None
            }
            for row in await connection.execute(_STEP_COUNTS, params):
                counts = steps.setdefault(str(row.step_id), _empty_step())
                if row.outcome_grouped:
                    counts["entered"] = int(row.runs)
                elif row.times:
                    counts["outcomes"][str(row.outcome)] = int(row.times)
            runs = (await connection.execute(_RUN_GROUPS, params)).all()
        ended: dict[str, int] = {}
        variants: dict[str, list[int]] = {}
        holdout = [0, 0]
        for row in runs:
            if row.status == "ended":
                reason = str(row.end_reason or "unknown")
                ended[reason] = ended.get(reason, 0) + int(row.runs)
            elif row.current_step is not None:
                counts = steps.setdefault(str(row.current_step), _empty_step())
                counts["waiting"] += int(row.runs)
            if row.holdout:
                tally = holdout
            elif row.variant is not None:
                tally = variants.setdefault(str(row.variant), [0, 0])
            else:
                continue  # not split (yet): counted in no comparison
            tally[0] += int(row.runs)
            tally[1] += int(row.converted)
        return CampaignStatsResult(
            campaign_id=data.campaign_id,
            steps={step: StepCounts.model_validate(counts) for step, counts in steps.items()},
            ended=ended,
            variants={name: _conversion(*tally) for name, tally in sorted(variants.items())},
            holdout=_conversion(*holdout),
            lift={
                name: measured
                for name, tally in sorted(variants.items())
                if (measured := lift(tally[1], tally[0], holdout[1], holdout[0])) is not None
            },
        )

    async def step_users(self, data: StepUsersInput) -> StepUsersResult:
        """A page of the runs at (or past) a step of the campaign, by user and run."""
        after = data.after or StepUserPosition(user_id="", run_key="")
        params = {
            "campaign": data.campaign_id,
            "step": data.step_id,
            "after_user": after.user_id,
            "after_run": after.run_key,
            "limit": data.limit + 1,
        }
        async with _snapshot(self._sessions) as connection:
            found = (await connection.execute(_PLAN_STEPS, params)).all()
            if not found:
                raise UnknownCampaignError(f"no campaign {data.campaign_id}")
            if data.step_id not in {row.step_id for row in found}:
                raise UnknownStepError(
                    f"the campaign's journey version has no step '{data.step_id}'"
                )
            query = _USERS_AT_STEP if data.state == "at" else _USERS_PAST_STEP
            rows = (await connection.execute(query, params)).all()
        page, more = rows[: data.limit], len(rows) > data.limit
        users = [StepUser.model_validate(row._asdict()) for row in page]
        last = users[-1] if users and more else None
        return StepUsersResult(
            users=users,
            next=StepUserPosition(user_id=last.user_id, run_key=last.run_key) if last else None,
        )

    async def user_journeys(self, data: UserJourneysInput) -> UserJourneysResult:
        """The user's runs, newest first, each with the steps it went through in order."""
        async with _snapshot(self._sessions) as connection:
            rows = (
                await connection.execute(
                    _USER_RUNS,
                    {
                        "user": data.user_id,
                        "after_at": data.after.entered_at if data.after else None,
                        "after_key": data.after.run_key if data.after else "",
                        # One more than asked tells whether another page follows.
                        "limit": data.limit + 1,
                    },
                )
            ).all()
            page, more = rows[: data.limit], len(rows) > data.limit
            paths: dict[str, list[PathEntry]] = {str(row.run_key): [] for row in page}
            if paths:
                logged = await connection.execute(_RUN_PATHS, {"runs": list(paths)})
                for entry in logged:
                    paths[str(entry.run_key)].append(
                        PathEntry(
                            step=entry.step_id,
                            type=entry.step_type,
                            outcome=entry.outcome,
                            at=entry.at,
                        )
                    )
        runs = [
            JourneyRun.model_validate({**row._asdict(), "path": paths[str(row.run_key)]})
            for row in page
        ]
        last = runs[-1] if runs and more else None
        return UserJourneysResult(
            runs=runs,
            next=RunPosition(entered_at=last.entered_at, run_key=last.run_key) if last else None,
        )


@asynccontextmanager
async def _snapshot(sessions: SessionFactory) -> AsyncIterator[AsyncConnection]:
    """A connection whose reads all see one snapshot, so one answer's figures agree."""
    async with transaction(sessions) as connection:
        await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        yield connection


def _empty_step() -> dict[str, Any]:
    return {"entered": 0, "waiting": 0, "outcomes": {}}


def _conversion(entrants: int, conversions: int) -> Conversion:
    rate = round(conversions / entrants, RATE_DIGITS) if entrants else None
    return Conversion(entrants=entrants, conversions=conversions, rate=rate)


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (trials > 0)."""
    p = successes / trials
    spread = z * z / trials
    centre = (p + spread / 2) / (1 + spread)
    half = z * math.sqrt(p * (1 - p) / trials + spread / (4 * trials)) / (1 + spread)
    return max(0.0, centre - half), min(1.0, centre + half)


def lift(
    conversions: int, entrants: int, holdout_conversions: int, holdout_entrants: int
) -> Lift | None:
    """Rate minus holdout rate, with Newcombe's hybrid score 95% interval; None without
    entrants on either side (there is nothing to compare)."""
    if entrants == 0 or holdout_entrants == 0:
        return None
    p1, p2 = conversions / entrants, holdout_conversions / holdout_entrants
    low1, high1 = wilson(conversions, entrants)
    low2, high2 = wilson(holdout_conversions, holdout_entrants)
    difference = p1 - p2
    below = math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    above = math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return Lift(
        value=round(difference, RATE_DIGITS),
        ci_low=round(difference - below, RATE_DIGITS),
        ci_high=round(difference + above, RATE_DIGITS),
    )


# One row per step of the pinned journey, in the order the journey lists them (the Plan's
# `steps` is a JSON object, whose keys jsonb sorts; the document's list keeps the order);
# one row with a null step when the campaign exists but its journey version is gone, so
# "unknown campaign" stays distinguishable.
_PLAN_STEPS = text(
    """
    SELECT steps.step ->> 'id' AS step_id
    FROM campaigns AS c
    LEFT JOIN resource_versions AS v
        ON v.kind = 'Journey' AND v.business_line = c.business_line
        AND v.name = c.journey AND v.version = c.journey_version
    LEFT JOIN LATERAL jsonb_array_elements(COALESCE(v.document -> 'spec' -> 'steps', '[]'))
        WITH ORDINALITY AS steps(step, position) ON true
    WHERE c.id = :campaign
    ORDER BY steps.position
    """
)

# Per step, distinct runs (the step grouping) and per outcome, times (the outcome grouping).
_STEP_COUNTS = text(
    f"""
    SELECT s.step_id, s.outcome,
           GROUPING(s.outcome) = 1 AS outcome_grouped,
           count(DISTINCT s.run_key) AS runs,
           count(*) FILTER (
               WHERE s.outcome IS NOT NULL AND s.outcome <> '{NOT_AN_OUTCOME}'
           ) AS times
    FROM enrolments AS e
    JOIN step_log AS s ON s.run_key = e.run_key
    WHERE e.campaign_id = :campaign AND s.step_type <> '{NOT_A_STEP}'
    GROUP BY GROUPING SETS ((s.step_id), (s.step_id, s.outcome))
    """
)

# A campaign's runs fall into few groups (steps x reasons x variants), folded in Python.
_RUN_GROUPS = text(
    """
    SELECT status, current_step, end_reason, variant, holdout,
           count(*) AS runs, count(converted_at) AS converted
    FROM enrolments
    WHERE campaign_id = :campaign
    GROUP BY status, current_step, end_reason, variant, holdout
    """
)

_USER_RUNS = text(
    """
    SELECT run_key, journey, business_line, campaign_id, plan_version, status,
           current_step, end_reason, entered_at, ended_at, converted_at, variant, holdout
    FROM enrolments
    WHERE user_id = :user
      AND (CAST(:after_at AS timestamptz) IS NULL
           OR (entered_at, run_key) < (CAST(:after_at AS timestamptz), :after_key))
    ORDER BY entered_at DESC, run_key DESC
    LIMIT :limit
    """
)

_RUN_PATHS = text(
    f"""
    SELECT run_key, step_id, step_type, outcome, at
    FROM step_log
    WHERE run_key = ANY(:runs) AND step_type <> '{NOT_A_STEP}'
    ORDER BY run_key, at, id
    """
)

_USERS_AT_STEP = text(
    """
    SELECT user_id, run_key, status, current_step, entered_at,
           NULL AS outcome, CAST(NULL AS timestamptz) AS at
    FROM enrolments
    WHERE campaign_id = :campaign AND status <> 'ended' AND current_step = :step
      AND (user_id, run_key) > (:after_user, :after_run)
    ORDER BY user_id, run_key
    LIMIT :limit
    """
)

# Runs that logged an outcome at the step (a quiet-hours delay is not passing it).
_USERS_PAST_STEP = text(
    f"""
    SELECT e.user_id, e.run_key, e.status, e.current_step, e.entered_at,
           latest.outcome, latest.at
    FROM enrolments AS e
    JOIN LATERAL (
        SELECT s.outcome, s.at FROM step_log AS s
        WHERE s.run_key = e.run_key AND s.step_id = :step
          AND s.step_type <> '{NOT_A_STEP}'
          AND s.outcome IS DISTINCT FROM '{NOT_AN_OUTCOME}'
        ORDER BY s.at DESC, s.id DESC
        LIMIT 1
    ) AS latest ON true
    WHERE e.campaign_id = :campaign
      AND (e.user_id, e.run_key) > (:after_user, :after_run)
    ORDER BY e.user_id, e.run_key
    LIMIT :limit
    """
)
