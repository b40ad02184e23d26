"""The contract of a journey run: what starts it, what it receives, what it carries.

The interpreter (`cjo.workflows.journey`) runs on these; the router and the campaign
activities start runs and signal them with them. Plain pydantic models: Temporal's
pydantic data converter turns them into payloads, and the same models come back on replay
and after continue-as-new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cjo.dsl import Plan
from cjo.steps.run import JourneyEvent, StepRecord, StepResult, UserProfile


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoutedEvent(_Model):
    """An event of one user, on its way to the journeys it concerns."""

    id: str | None = None
    user_id: str
    name: str
    props: dict[str, Any] = Field(default_factory=dict)
    ts: datetime

    def as_journey_event(self) -> JourneyEvent:
        return JourneyEvent(id=self.id, name=self.name, props=self.props, ts=self.ts)


class RunState(_Model):
    """Everything a run knows, carried whole into a continued-as-new execution."""

    run_key: str
    entered_at: datetime
    holdout: bool = False
    profile: UserProfile | None = None
    position: str | None = None  # the step to run next; None once the graph is done
    path: list[str] = Field(default_factory=list)  # every step run, in order
    visits: dict[str, int] = Field(default_factory=dict)
    steps: dict[str, StepResult] = Field(default_factory=dict)
    variant: str | None = None
    benefit: dict[str, Any] | None = None
    converted_at: datetime | None = None
    # Events received since the last wait ended, for the next `wait_for` to consider.
    unconsumed: list[JourneyEvent] = Field(default_factory=list)
    pending: list[StepRecord] = Field(default_factory=list)
    expression_errors: int = 0


class JourneyInput(_Model):
    plan: Plan
    user_id: str
    trigger: JourneyEvent
    # The user's profile as whoever started the run read it (the router does, to test the
    # trigger's `where`): the run then needs no `journeys.enter`.
    profile: UserProfile | None = None
    entry_key: str | None = None
    campaign_id: str | None = None
    state: RunState | None = None  # set only when continuing as new


class JourneyOutcome(_Model):
    end_reason: str
    converted_at: datetime | None = None
    path: list[str] = Field(default_factory=list)


class StopRequest(_Model):
    reason: str = "stopped"
