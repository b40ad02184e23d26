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

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities._base import utc
from cjo.store.schema import StepLogEntry

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

    def next_step(self, outcome: str | None) -> str | None:
        target = self.routes.get(outcome or "", "end")
        return None if target == "end" else target


@dataclass(frozen=True, slots=True)
class RunWrite:
    """One run's records and its new position, to be written with a step's effect."""

    user_id: str
    run: RunRecords
    records: Sequence[StepRecord]
    current_step: str | None


async def campaign_holds(
    connection: AsyncConnection, campaign_ids: Collection[str | None]
) -> dict[str, Hold]:
    """The listed campaigns that are paused ("held") or stopped; running ones are absent."""
    ids = sorted({campaign_id for campaign_id in campaign_ids if campaign_id is not None})
    if not ids:
        return {}
    rows = await connection.execute(
        text("SELECT id, state FROM campaigns WHERE id = ANY(:ids)"), {"ids": ids}
    )
    return {
        str(campaign_id): _HOLDING_STATES[state]
        for campaign_id, state in rows
        if state in _HOLDING_STATES
    }


async def write_step_records(
    connection: AsyncConnection, run_key: str, user_id: str, records: Sequence[StepRecord]
) -> None:
    await write_runs(connection, [RunWrite(user_id, RunRecords(run_key=run_key), records, None)])


async def write_runs(
    connection: AsyncConnection, writes: Sequence[RunWrite], *, move: bool = False
) -> None:
    """Insert the step records (a key already written stays as it was); with `move`, also
    set each enrolment's current step, variant and conversion."""
    rows = [
        {
            "key": record.key,
            "run_key": write.run.run_key,
            "user_id": write.user_id,
            "step_id": record.step_id,
            "step_type": record.step_type,
            "outcome": record.outcome,
            "detail": record.detail,
            "at": utc(record.at),
        }
        for write in writes
        for record in write.records
    ]
    if rows:
        await connection.execute(
            insert(StepLogEntry).on_conflict_do_nothing(index_elements=["key"]), rows
        )
    if move and writes:
        await connection.execute(
            text(
                "UPDATE enrolments SET current_step = :step, status = 'active',"
                " variant = coalesce(:variant, variant),"
                " converted_at = coalesce(converted_at, :converted)"
                " WHERE run_key = :run AND status <> 'ended'"
            ),
            [
                {
                    "step": write.current_step,
                    "variant": write.run.variant,
                    "converted": utc(write.run.converted_at) if write.run.converted_at else None,
                    "run": write.run.run_key,
                }
                for write in writes
            ],
        )
