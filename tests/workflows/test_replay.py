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

from cjo.activities.runs.models import JourneyInput, JourneyOutcome
from cjo.dsl import PlanStep
from cjo.steps.run import StepResult
from cjo.worker import sandbox
from cjo.workflows.journey import JourneyWorkflow
from tests.workflows.record_histories import (
    CURRENT_GENERATION,
    HISTORY_ROOT,
    MANIFEST_NAME,
    journey_path,
    load_history,
    step_types,
)

GENERATIONS = sorted(path.name for path in HISTORY_ROOT.iterdir() if path.is_dir())
RECORDED: dict[str, dict[str, dict[str, Any]]] = {
    generation: json.loads((HISTORY_ROOT / generation / MANIFEST_NAME).read_text("utf-8"))
    for generation in GENERATIONS
}
# "<generation>/<name>" for every recorded history.
HISTORY_NAMES = sorted(
    f"{path.parent.name}/{path.stem}"
    for path in HISTORY_ROOT.glob("*/*.json")
    if path.name != MANIFEST_NAME
)
# Each step model of the Plan's union names its one type.
EVERY_STEP_TYPE = {
    typing.get_args(model.model_fields["type"].annotation)[0]
    for model in typing.get_args(typing.get_args(PlanStep)[0])
}
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
# Shapes a generation brought: it and every later one must record them.
INTRODUCED = {
    "v1-records-in-step-activities": {
        "campaign:held",  # a send held by a paused campaign, released by resume
        "ended_by_step_activity",  # the last step's activity closed the run: no finish call
    },
    "v2-entry-with-first-write": {
        "entered_with_first_write",  # started with its profile: no journeys.enter
    },
}


def _entry(name: str) -> dict[str, Any]:
    generation, stem = name.split("/")
    return RECORDED[generation][stem]


def _history(name: str) -> WorkflowHistory:
    return load_history(HISTORY_ROOT / f"{name}.json", _entry(name)["workflow_id"])


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
    described = {
        f"{generation}/{name}" for generation in GENERATIONS for name in RECORDED[generation]
    }
    assert HISTORY_NAMES and set(HISTORY_NAMES) == described
    assert CURRENT_GENERATION in GENERATIONS


@pytest.mark.parametrize("name", HISTORY_NAMES)
def test_the_manifest_matches_its_history(name: str) -> None:
    history = _history(name)
    assert journey_path(history) == _entry(name)["path"]
    assert sorted(step_types(history)) == _entry(name)["step_types"]


@pytest.mark.parametrize("generation", GENERATIONS)
def test_each_generation_runs_every_step_type(generation: str) -> None:
    names = [name for name in HISTORY_NAMES if name.startswith(f"{generation}/")]
    covered: set[str] = set().union(*(step_types(_history(name)) for name in names))
    assert covered == EVERY_STEP_TYPE and len(covered) == 10


@pytest.mark.parametrize("generation", GENERATIONS)
def test_each_generation_covers_the_features_that_shape_commands(generation: str) -> None:
    entries = RECORDED[generation].values()
    exercised: set[str] = set().union(*(set(entry["features"]) for entry in entries))
    brought = [shapes for since, shapes in INTRODUCED.items() if since <= generation]
    required = REQUIRED_FEATURES.union(*brought)
    assert required - exercised == set()


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
        await _replayer(_PauseBeforeEveryStep).replay_workflow(
            _history(f"{CURRENT_GENERATION}/every_step")
        )


async def test_the_same_change_behind_a_patch_replays() -> None:
    result = await _replayer(_PatchedPauseBeforeEveryStep).replay_workflow(
        _history(f"{CURRENT_GENERATION}/every_step")
    )
    assert result.replay_failure is None
