"""Recorded journey histories replay unchanged against today's interpreter.

Journeys run for weeks: a worker deployed mid-run replays each run's history, and a change
to the interpreter that issues different commands for the same history fails those runs.
Such changes go behind `workflow.patched(...)`. The histories come from
`python -m tests.workflows.record_histories` (see histories/manifest.json for what each one
exercised); replaying them needs neither a server nor a database.
"""

from __future__ import annotations

import json
import typing
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from cjo.activities.journey_models import JourneyInput, JourneyOutcome, StepResult
from cjo.dsl import PlanStep
from cjo.worker import sandbox
from cjo.workflows.journey import JourneyWorkflow
from tests.workflows.record_histories import (
    HISTORIES,
    MANIFEST,
    journey_path,
    load_history,
    step_types,
)

RECORDED: dict[str, dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))
HISTORY_NAMES = sorted(path.stem for path in HISTORIES.glob("*.json") if path != MANIFEST)
EVERY_STEP_TYPE = set(typing.get_args(PlanStep.model_fields["type"].annotation))
# What the recorded runs must have done between them, besides running every step type.
REQUIRED_FEATURES = {
    "send:sent",
    "send:delayed",  # quiet hours with `delay`: a durable timer, then the same send again
    "send:fallback",
    "grant:granted",
    "risk:pass",
    "risk:reject",
    "branch:cel",
    "branch:segment",
    "wait:duration",
    "wait:until_time",
    "wait:until_timestamp",
    "wait_for:event",
    "wait_for:timeout",
    "update:done",
    "call:basic",
    "goal:converted",
    "holdout",
    "continue_as_new",
    "continued_from_state",
    "end_reason:completed",
    "end_reason:converted",
    "end_reason:exited",
    "end_reason:rejected",
    "end_reason:stopped",
}


def _history(name: str) -> WorkflowHistory:
    return load_history(HISTORIES / f"{name}.json", RECORDED[name]["workflow_id"])


def _replayer(journey: type) -> Replayer:
    runner = sandbox()
    if journey is not JourneyWorkflow:
        # The altered copies below live in this test module, which the sandbox would
        # otherwise re-import (with the recorder and its file system access) per run.
        restrictions = runner.restrictions.with_passthrough_modules("tests")
        runner = SandboxedWorkflowRunner(restrictions=restrictions)
    return Replayer(
        workflows=[journey], workflow_runner=runner, data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("name", HISTORY_NAMES)
async def test_a_recorded_history_replays_without_nondeterminism(name: str) -> None:
    result = await _replayer(JourneyWorkflow).replay_workflow(_history(name))
    assert result.replay_failure is None


def test_every_history_is_described_in_the_manifest() -> None:
    assert HISTORY_NAMES and set(HISTORY_NAMES) == set(RECORDED)


@pytest.mark.parametrize("name", HISTORY_NAMES)
def test_the_manifest_matches_its_history(name: str) -> None:
    history = _history(name)
    assert journey_path(history) == RECORDED[name]["path"]
    assert sorted(step_types(history)) == RECORDED[name]["step_types"]


def test_the_histories_run_every_step_type() -> None:
    covered: set[str] = set().union(*(step_types(_history(name)) for name in HISTORY_NAMES))
    assert covered == EVERY_STEP_TYPE and len(covered) == 10


def test_the_histories_cover_the_features_that_shape_commands() -> None:
    exercised: set[str] = set().union(*(set(entry["features"]) for entry in RECORDED.values()))
    assert REQUIRED_FEATURES - exercised == set()


# The replay has teeth: the same history fails against a careless change ----------------


@workflow.defn(name="Journey")
class _PauseBeforeEveryStep(JourneyWorkflow):
    """A change that starts a timer the recorded runs never started, unguarded."""

    @workflow.run
    async def run(self, data: JourneyInput) -> JourneyOutcome:
        return await super().run(data)

    async def _run_step(self, step: PlanStep, key: str) -> StepResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super()._run_step(step, key)


@workflow.defn(name="Journey")
class _PatchedPauseBeforeEveryStep(JourneyWorkflow):
    """The same change behind `workflow.patched`: old runs keep their old commands."""

    @workflow.run
    async def run(self, data: JourneyInput) -> JourneyOutcome:
        return await super().run(data)

    async def _run_step(self, step: PlanStep, key: str) -> StepResult:
        if workflow.patched("pause-before-every-step"):
            await workflow.sleep(timedelta(seconds=1))
        return await super()._run_step(step, key)


async def test_an_unguarded_change_to_the_interpreter_fails_replay() -> None:
    with pytest.raises(NondeterminismError):
        await _replayer(_PauseBeforeEveryStep).replay_workflow(_history("every_step"))


async def test_the_same_change_behind_a_patch_replays() -> None:
    result = await _replayer(_PatchedPauseBeforeEveryStep).replay_workflow(_history("every_step"))
    assert result.replay_failure is None
