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
from typing import Any, Literal, Protocol, get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.steps.run import Hold, RunRecords, StepRecord, StepResult, utc
from cjo.steps.semantics import next_step
from cjo.store.db import Statement, run_each

# Campaign states in which a step activity does nothing and says why.
_HOLDING_STATES: dict[str, Hold] = {"paused": "held", "stopped": "stopped"}
HOLDS: frozenset[str] = frozenset(get_args(Hold))


class StepRequest(Protocol):
    """What every journey step activity's request says of its run."""

    @property
    def key(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def step_id(self) -> str | None: ...
    @property
    def at(self) -> datetime: ...
    @property
    def run(self) -> RunRecords | None: ...


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


def step_done(
    request: StepRequest, run: RunRecords, step_type: str, result: StepResult
) -> RunWrite:
    """A journey's step activity did its step: the run's pending records and this step's,
    and the user moves on by the outcome (or the run ends there, if the run said how)."""
    record = StepRecord.of(request.key, request.step_id or "", step_type, result, request.at)
    current = next_step(run.routes, result.outcome)
    end_reason = run.end_reason if current is None else None
    return RunWrite(request.user_id, run, [*run.pending, record], current, request.at, end_reason)


def step_put_off(
    request: StepRequest, run: RunRecords, step_type: str, result: StepResult
) -> RunWrite:
    """The step is put off (quiet hours): recorded under `<key>/delay`, the user stays."""
    key = f"{request.key}/delay"
    record = StepRecord.of(key, request.step_id or "", step_type, result, request.at)
    return RunWrite(request.user_id, run, [*run.pending, record], request.step_id, request.at)


# The records and the enrolment's move in one statement: a run costs one round trip here.
_LOG_RECORDS = (
    "WITH logged AS ("
    " INSERT INTO step_log (key, run_key, user_id, step_id, step_type, outcome, detail, at)"
    " SELECT r.key, :run, :user_id, r.step_id, r.step_type, r.outcome, r.detail, r.at"
    " FROM jsonb_to_recordset(CAST(:records AS jsonb)) AS r(key text, step_id text,"
    " step_type text, outcome text, detail jsonb, at timestamptz)"
    " ON CONFLICT (key) DO NOTHING)"
)
_STATUS = "CASE WHEN CAST(:end_reason AS text) IS NULL THEN :status ELSE 'ended' END"
_ENDED_AT = (
    "CASE WHEN CAST(:end_reason AS text) IS NULL THEN NULL ELSE CAST(:at AS timestamptz) END"
)
_RECORD_AND_MOVE = Statement(
    f"{_LOG_RECORDS}"
    f" UPDATE enrolments SET current_step = :step, status = {_STATUS},"
    " end_reason = coalesce(CAST(:end_reason AS text), end_reason),"
    f" ended_at = coalesce({_ENDED_AT}, ended_at),"
    " variant = coalesce(:variant, variant),"
    " converted_at = coalesce(converted_at, :converted)"
    " WHERE run_key = :run AND status <> 'ended'"
)
# A run's first write also enters it: the same move, as an insert when there is no row yet.
_ENTER_RECORD_AND_MOVE = Statement(
    f"{_LOG_RECORDS}"
    " INSERT INTO enrolments AS e (run_key, workflow_id, campaign_id, business_line, journey,"
    " plan_version, user_id, entry_key, holdout, entered_at, current_step, status,"
    " end_reason, ended_at, variant, converted_at)"
    " VALUES (:run, :workflow_id, :campaign_id, :business_line, :journey, :plan_version,"
    f" :user_id, :entry_key, :holdout, :entered_at, :step, {_STATUS},"
    f" CAST(:end_reason AS text), {_ENDED_AT}, :variant, :converted)"
    " ON CONFLICT (run_key) DO UPDATE SET current_step = EXCLUDED.current_step,"
    " status = EXCLUDED.status, end_reason = coalesce(EXCLUDED.end_reason, e.end_reason),"
    " ended_at = coalesce(EXCLUDED.ended_at, e.ended_at),"
    " variant = coalesce(EXCLUDED.variant, e.variant),"
    " converted_at = coalesce(e.converted_at, EXCLUDED.converted_at)"
    " WHERE e.status <> 'ended'"
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
    enrolment: its current step, status, variant and conversion, or its end; a run's first
    write (its `entry` given) creates the enrolment."""
    moves = [_move_params(write) for write in writes if write.run.entry is None]
    entries = [_move_params(write) for write in writes if write.run.entry is not None]
    if moves:
        await run_each(connection, _RECORD_AND_MOVE, moves)
    if entries:
        await run_each(connection, _ENTER_RECORD_AND_MOVE, entries)


def _move_params(write: RunWrite) -> dict[str, Any]:
    records = [record.model_dump(mode="json") for record in write.records]
    converted = write.run.converted_at
    params: dict[str, Any] = {
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
    entry = write.run.entry
    if entry is not None:
        params.update(entry.model_dump(exclude={"entered_at"}))
        params["entered_at"] = utc(entry.entered_at)
    return params
