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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from cjo.activities.campaigns import UnknownCampaignError
from cjo.store.db import SessionFactory

__all__ = [
    "CampaignStatsInput",
    "CampaignStatsResult",
    "Conversion",
    "JourneyRun",
    "PathEntry",
    "RunPosition",
    "StatsActivities",
    "StepCounts",
    "UserJourneysInput",
    "UserJourneysResult",
]

# Rates are shown to people and compared across variants; more digits are noise.
RATE_DIGITS = 4
NOT_AN_OUTCOME = "delayed"
NOT_A_STEP = "expression"


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


class CampaignStatsInput(_Model):
    campaign_id: str


class CampaignStatsResult(_Model):
    """Every step of the campaign's pinned journey appears, with zeros until reached."""

    campaign_id: str
    steps: dict[str, StepCounts]
    ended: dict[str, int]
    variants: dict[str, Conversion]
    holdout: Conversion


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


class UserJourneysResult(_Model):
    """`next` is where the following page starts, or None on the last page."""

    runs: list[JourneyRun]
    next: RunPosition | None = None


class StatsActivities:
    """Campaign figures and a user's runs, read from the run records."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="stats.campaign")
    async def campaign_stats(self, data: CampaignStatsInput) -> CampaignStatsResult:
        params = {"campaign": data.campaign_id}
        async with self._sessions() as session, session.begin():
            connection = await _snapshot(session)
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
        )

    @activity.defn(name="stats.user_journeys")
    async def user_journeys(self, data: UserJourneysInput) -> UserJourneysResult:
        """The user's runs, newest first, each with the steps it went through in order."""
        async with self._sessions() as session, session.begin():
            connection = await _snapshot(session)
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


async def _snapshot(session: AsyncSession) -> AsyncConnection:
    connection = await session.connection()
    await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    return connection


def _empty_step() -> dict[str, Any]:
    return {"entered": 0, "waiting": 0, "outcomes": {}}


def _conversion(entrants: int, conversions: int) -> Conversion:
    rate = round(conversions / entrants, RATE_DIGITS) if entrants else None
    return Conversion(entrants=entrants, conversions=conversions, rate=rate)


# One row per step of the pinned journey; one row with a null step when the campaign
# exists but its journey version is gone, so "unknown campaign" stays distinguishable.
_PLAN_STEPS = text(
    """
    SELECT steps.step_id
    FROM campaigns AS c
    LEFT JOIN resource_versions AS v
        ON v.kind = 'Journey' AND v.business_line = c.business_line
        AND v.name = c.journey AND v.version = c.journey_version
    LEFT JOIN LATERAL jsonb_object_keys(COALESCE(v.plan -> 'steps', '{}'::jsonb))
        AS steps(step_id) ON true
    WHERE c.id = :campaign
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
