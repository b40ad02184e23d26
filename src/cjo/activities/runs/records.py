"""A journey run's bookkeeping: the step log, where the user is, and the campaign's hold.

The interpreter's records reach the database two ways. Through `journeys.record` and
`journeys.finish` (local activities), and, since the `records-in-step-activities` patch,
riding along with a send or grant: the step activity writes the run's pending records,
its own step's record and the user's next position in the same transaction as the
message or grant. That is the architecture's rule for cohort execution (per-user effects
inside the activities' transactions, not extra per-user calls), and it saves a run the
local activities that would otherwise precede each send, grant and wait.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities._base import utc

# Campaign states in which a step activity does nothing and says why.
Hold = Literal["held", "stopped"]
_HOLDING_STATES: dict[str, Hold] = {"paused": "held", "stopped": "stopped"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepRecord(_Model):
    """One step a user went through: its outcome and what it produced."""

    key: str = Field(min_length=1, max_length=512)
    step_id: str
    step_type: str
    outcome: str | None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class RunRecords(_Model):
    """What a step activity writes for the run besides its effect.

    `pending`: records the run has not written yet. `routes`: where each outcome of this
    step leads (the step the user will be at; absent or "end" means the run ends there).
    """

    run_key: str
    campaign_id: str | None = None
    pending: list[StepRecord] = Field(default_factory=list)
    routes: dict[str, str] = Field(default_factory=dict)
    variant: str | None = None
    converted_at: datetime | None = None
    # When the outcome leads to the end and nothing else is left to wait for, the activity
    # also closes the enrolment with this reason, and the run needs no `journeys.finish`.
    end_reason: str | None = None

    def next_step(self, outcome: str | None) -> str | None:
        target = self.routes.get(outcome or "", "end")
        return None if target == "end" else target


@dataclass(frozen=True, slots=True)
class RunWrite:
    """One run's records and its new position, to be written with a step's effect.

    `end_reason`: the run ends here, for this reason (at `at`); else its enrolment is
    left in `status` ("held" while a paused campaign holds it).
    """

    user_id: str
    run: RunRecords
    records: Sequence[StepRecord]
    current_step: str | None
    at: datetime | None = None
    end_reason: str | None = None
    status: Literal["active", "held"] = "active"


def run_write(
    user_id: str,
    run: RunRecords,
    records: Sequence[StepRecord],
    current_step: str | None,
    at: datetime,
) -> RunWrite:
    """The write for a step that leaves the user at `current_step` (None: the run is over,
    and ends here if the interpreter said how)."""
    end_reason = run.end_reason if current_step is None else None
    return RunWrite(user_id, run, records, current_step, at, end_reason)


# The records and the enrolment's move in one statement: a run costs one round trip here.
_RECORD_AND_MOVE = text(
    "WITH logged AS ("
    " INSERT INTO step_log (key, run_key, user_id, step_id, step_type, outcome, detail, at)"
    " SELECT r.key, :run, :user_id, r.step_id, r.step_type, r.outcome, r.detail, r.at"
    " FROM jsonb_to_recordset(CAST(:records AS jsonb)) AS r(key text, step_id text,"
    " step_type text, outcome text, detail jsonb, at timestamptz)"
    " ON CONFLICT (key) DO NOTHING)"
    " UPDATE enrolments SET current_step = :step,"
    " status = CASE WHEN CAST(:end_reason AS text) IS NULL THEN :status ELSE 'ended' END,"
    " end_reason = coalesce(CAST(:end_reason AS text), end_reason),"
    " ended_at = CASE WHEN CAST(:end_reason AS text) IS NULL THEN ended_at ELSE :at END,"
    " variant = coalesce(:variant, variant),"
    " converted_at = coalesce(converted_at, :converted)"
    " WHERE run_key = :run AND status <> 'ended'"
)


def holds_of(rows: Iterable[Any]) -> dict[str, Hold]:
    """(campaign id, state) rows -> the paused and stopped ones, as their hold."""
    return {
        str(campaign_id): _HOLDING_STATES[state]
        for campaign_id, state in rows
        if state in _HOLDING_STATES
    }


async def write_runs(connection: AsyncConnection, writes: Sequence[RunWrite]) -> None:
    """Insert each run's step records (a key already written stays as it was) and move its
    enrolment: its current step, status, variant and conversion, or its end."""
    if writes:
        await connection.execute(_RECORD_AND_MOVE, [_move_params(write) for write in writes])


def _move_params(write: RunWrite) -> dict[str, Any]:
    records = [record.model_dump(mode="json") for record in write.records]
    converted = write.run.converted_at
    return {
        "run": write.run.run_key,
        "user_id": write.user_id,
        "records": json.dumps(records),
        "step": write.current_step,
        "end_reason": write.end_reason,
        "status": write.status,
        "at": utc(write.at) if write.at else None,
        "variant": write.run.variant,
        "converted": utc(converted) if converted else None,
    }
