"""The journey interpreter: one workflow per user per journey run, walking a compiled Plan.

Deterministic Temporal code. It touches the database, the network and the clock only
through activities and Temporal's APIs; time is `workflow.now()`, waits are durable
timers, and every side effect is an idempotent activity keyed `<run>/<step>/<visit>`.

Goal and exit events are listened for during every step: the signal handler records them
at once, and every wait is cut short when the run has to leave. Changes to this
interpreter go behind `workflow.patched(...)` so running journeys replay unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError as TemporalActivityError

with workflow.unsafe.imports_passed_through():
    from cjo.activities.benefits.grants import BenefitActivities
    from cjo.activities.calls.runner import CallActivities
    from cjo.activities.messaging.send import MessagingActivities
    from cjo.activities.people.profiles import ProfileActivities
    from cjo.activities.people.segments import SegmentActivities
    from cjo.activities.risk.policies import RiskActivities
    from cjo.activities.runs.journeys import (
        CampaignStateInput,
        EnterJourneyInput,
        FinishJourneyInput,
        JourneyActivities,
        RecordStepsInput,
    )
    from cjo.activities.runs.models import JourneyInput, JourneyOutcome, RunState, StopRequest
    from cjo.dsl import Plan, PlanStep, evaluate_expression
    from cjo.dsl.plan import (
        BranchPlanStep,
        CallPlanStep,
        EndPlanStep,
        GrantPlanStep,
        RiskPlanStep,
        SendPlanStep,
        SplitPlanStep,
        UpdatePlanStep,
        Values,
        WaitForPlanStep,
        WaitPlanStep,
        WhenCase,
    )
    from cjo.steps import semantics
    from cjo.steps.contracts import (
        EvaluateRiskInput,
        GrantBenefitInput,
        RunCallsInput,
        SendMessageInput,
        UpdateProfilesInput,
    )
    from cjo.steps.rules import in_holdout
    from cjo.steps.run import (
        EndReason,
        JourneyEvent,
        RunEntry,
        RunRecords,
        StepRecord,
        StepResult,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=60)
LOCAL_ACTIVITY_TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,  # transient failures retry until they mend; permanent ones say so
)
# While a campaign is paused, a held user asks again this often (a resume signal is faster).
PAUSE_RECHECK = timedelta(minutes=1)
# With the patch below, the interval doubles up to this: resume signals every held run, so
# asking is only the safety net for a run that went on hold as the resume went out, and a
# week-long pause should not cost each held user ten thousand checks.
PAUSE_RECHECK_MAX = timedelta(hours=1)
# Runs started since this patch let send and grant activities check the campaign's pause
# and write the run's records in their own transaction, instead of a local activity for
# each (two fewer per send or grant, one fewer per wait that follows one).
RECORDS_IN_STEP_ACTIVITIES = "records-in-step-activities"
# Runs started with their profile (the router read it already, to test the trigger's
# `where`) skip `journeys.enter`: their first write, whichever it is, creates the
# enrolment. One local activity and one activation fewer per run. It implies
# RECORDS_IN_STEP_ACTIVITIES, so such a run records one patch marker (each marker also
# upserts the TemporalChangeVersion search attribute: two history events).
ENTRY_WITH_FIRST_WRITE = "entry-with-first-write"


class _Leave(Exception):
    """The run ends now (goal with exit, exit event, stop, reject, failure)."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(reason)
        self.reason: EndReason = reason


@workflow.defn(name="Journey")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, data: JourneyInput) -> None:
        # State exists before the first signal is handled: with signal-with-start the
        # signal may be applied before `run` begins.
        self._leave: EndReason | None = None
        self._awaiting: WaitForPlanStep | None = None
        self._matched: JourneyEvent | None = None
        self._resumed = False
        # Set in `run`: whether this run follows RECORDS_IN_STEP_ACTIVITIES.
        self._records_in_steps = False
        # The step key whose record a step activity wrote, and the enrolment's current step
        # as last written (known only when `_position_known`), so waits skip a redundant flush.
        self._recorded_key: str | None = None
        self._position_known = False
        self._written_position: str | None = None
        # The end reason a step activity was told to close the enrolment with, were its
        # outcome the last; and the reason it did close it with (no `journeys.finish` then).
        self._ending_with_step: EndReason | None = None
        self._ended_as: EndReason | None = None
        # With ENTRY_WITH_FIRST_WRITE: the run's entry, until a write has created its enrolment.
        self._entry: RunEntry | None = None
        self._input: JourneyInput | None = data
        info = workflow.info()
        self._state: RunState | None = data.state or RunState(
            # first_execution_run_id survives continue-as-new: one key per entry.
            run_key=f"{info.workflow_id}@{info.first_execution_run_id}",
            entered_at=workflow.now(),
            holdout=in_holdout(data.plan, data.user_id),
            position=data.plan.start,
        )

    # Signals and queries --------------------------------------------------------------

    @workflow.signal(name="event")
    def on_event(self, event: JourneyEvent) -> None:
        """Every event routed to this run: goal, exit, and what a `wait_for` awaits."""
        if self._input is None or self._state is None or self._leave is not None:
            return
        if event.id is not None and event.id == self._input.trigger.id:
            return  # the trigger itself, delivered by signal-with-start
        plan, state = self._input.plan, self._state
        for rule in plan.exits:
            if rule.event == event.name and self._holds(rule.where, event, "exit"):
                self._leave = "exited"
                return
        goal = plan.goal
        if (
            goal is not None
            and state.converted_at is None
            and goal.event == event.name
            and event.ts <= state.entered_at + timedelta(seconds=goal.within_seconds)
            and self._holds(goal.where, event, "goal")
        ):
            state.converted_at = workflow.now()
            if goal.exit:
                self._leave = "converted"
                return
        awaiting = self._awaiting
        if awaiting is not None and self._matched is None:
            if semantics.awaits(
                awaiting, event, lambda where: self._holds(where, event, "wait_for")
            ):
                self._matched = event
                return
        state.unconsumed.append(event)

    @workflow.signal(name="stop")
    def on_stop(self, request: StopRequest) -> None:
        if self._leave is None:
            self._leave = "stopped"

    @workflow.signal(name="resume")
    def on_resume(self) -> None:
        self._resumed = True

    @workflow.query(name="position")
    def position(self) -> dict[str, Any]:
        state = self._state
        return {
            "step": state.position if state else None,
            "visits": dict(state.visits) if state else {},
            "converted": bool(state and state.converted_at),
        }

    # The run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: JourneyInput) -> JourneyOutcome:
        state, plan = self._require()
        fresh = data.state is None
        if fresh and data.profile is not None and workflow.patched(ENTRY_WITH_FIRST_WRITE):
            # The later patch implies the earlier one: a run pays for one patch marker.
            self._records_in_steps = True
            state.profile = data.profile
            self._entry = self._run_entry()
        else:
            self._records_in_steps = workflow.patched(RECORDS_IN_STEP_ACTIVITIES)
            failed_to_enter = await self._enter() if fresh else None
            if failed_to_enter is not None:
                return await self._finish(failed_to_enter)
        try:
            if state.holdout:
                await self._await_goal_window()
            else:
                await self._walk()
                await self._await_goal_window()
        except _Leave as leaving:
            return await self._finish(leaving.reason)
        if self._ended_as is not None:
            # The last step's activity ended the enrolment; an exit or stop that arrived
            # meanwhile came after the run's last step, so it ended as that activity said.
            if state.pending:  # records made since (an expression error in a signal)
                return await self._finish(self._ended_as)
            return JourneyOutcome(
                end_reason=self._ended_as, converted_at=state.converted_at, path=state.path
            )
        if self._leave is not None:
            return await self._finish(self._leave)
        goal_exits = plan.goal is not None and plan.goal.exit
        converted = state.converted_at is not None and goal_exits
        return await self._finish("converted" if converted else "completed")

    async def _enter(self) -> EndReason | None:
        """Record the entry and load the profile (`journeys.enter`), for runs started without
        their profile; how the run ends at once, if it does."""
        state = self._require()[0]
        entry = self._run_entry()
        entered = await workflow.execute_local_activity_method(
            JourneyActivities.enter,
            EnterJourneyInput(
                run_key=state.run_key,
                workflow_id=entry.workflow_id,
                campaign_id=entry.campaign_id,
                business_line=entry.business_line,
                journey=entry.journey,
                plan_version=entry.plan_version,
                user_id=self._require_input().user_id,
                entry_key=entry.entry_key,
                holdout=entry.holdout,
                at=entry.entered_at,
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        state.profile = entered.profile
        if entered.profile is None:
            workflow.logger.warning("no profile for this user; the run cannot start")
            return "failed"
        if entered.campaign_state == "stopped":
            return "stopped"
        return None

    def _run_entry(self) -> RunEntry:
        state, plan = self._require()
        data = self._require_input()
        return RunEntry(
            workflow_id=workflow.info().workflow_id,
            campaign_id=data.campaign_id,
            business_line=plan.journey.business_line,
            journey=plan.journey.name,
            plan_version=plan.version,
            entry_key=data.entry_key,
            holdout=state.holdout,
            entered_at=workflow.now(),
        )

    async def _walk(self) -> None:
        state, plan = self._require()
        while state.position is not None and state.position != "end":
            self._check_leave()
            if workflow.info().is_continue_as_new_suggested():
                await self._flush()
                workflow.continue_as_new(self._require_input().model_copy(update={"state": state}))
            step = plan.steps[state.position]
            visit = state.visits.get(step.id, 0) + 1
            state.visits[step.id] = visit
            key = f"{state.run_key}/{step.id}/{visit}"
            state.path.append(step.id)
            result = await self._run_step(step, key)
            state.steps[step.id] = result
            if self._recorded_key != key:
                self._log(step, key, result)
            if isinstance(step, EndPlanStep):
                state.position = None
                return
            reason = semantics.ends_run(step, result.outcome)
            if reason is not None:
                raise _Leave(reason)
            state.position = semantics.next_step(step.routes, result.outcome)
        state.position = None

    async def _run_step(self, step: PlanStep, key: str) -> StepResult:
        try:
            return await self._step(step, key)
        except _Leave as leaving:
            # The step was under way when the run had to leave: record that it was entered.
            self._log(step, key, StepResult(outcome=None, result={"left": leaving.reason}))
            raise
        except TemporalActivityError as failure:
            workflow.logger.error("step failed", extra={"step": step.id, "error": str(failure)})
            self._log(step, key, StepResult(outcome="failed", result={"error": str(failure)}))
            raise _Leave("failed") from None

    async def _step(self, step: PlanStep, key: str) -> StepResult:
        match step:
            case SendPlanStep():
                return await self._send(step, key)
            case GrantPlanStep():
                return await self._grant(step, key)
            case RiskPlanStep():
                return await self._risk(step, key)
            case BranchPlanStep():
                return await self._branch(step)
            case SplitPlanStep():
                return self._split(step)
            case WaitPlanStep():
                return await self._wait(step)
            case WaitForPlanStep():
                return await self._wait_for(step)
            case UpdatePlanStep():
                return await self._update(step, key)
            case CallPlanStep():
                return await self._call(step, key)
            case EndPlanStep():
                return semantics.end_result(step)

    # Steps ------------------------------------------------------------------------------

    async def _send(self, step: SendPlanStep, key: str) -> StepResult:
        if not self._records_in_steps:
            await self._hold_while_paused()
        values = self._values(step.params.vars)
        while True:
            request = semantics.send_request(
                step,
                self._run_context(),
                key=key,
                now=workflow.now(),
                values=values,
                records=self._run_records(step),
            )
            decision = (
                await workflow.execute_activity_method(
                    MessagingActivities.send,
                    SendMessageInput(requests=[request]),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY,
                )
            ).results[0]
            if decision.outcome in ("held", "stopped"):
                await self._held(decision.outcome)
                continue
            if decision.outcome != "delay" or decision.until is None:
                self._written_by_step(key, step, decision.outcome)
                break
            # Quiet hours with `delay`: a durable timer, then ask again with the same key.
            if self._records_in_steps:
                self._written_by_step(f"{key}/delay", step, None, position=step.id)
            else:
                self._log(step, f"{key}/delay", semantics.delayed_result(decision.until))
                await self._flush(current=step.id)
            await self._sleep_until(decision.until)
        return semantics.send_result(decision)

    async def _grant(self, step: GrantPlanStep, key: str) -> StepResult:
        state, plan = self._require()
        if not self._records_in_steps:
            await self._hold_while_paused()
        while True:
            request = semantics.grant_request(
                step,
                self._run_context(),
                key=key,
                now=workflow.now(),
                records=self._run_records(step),
            )
            outcome = (
                await workflow.execute_activity_method(
                    BenefitActivities.grant,
                    GrantBenefitInput(requests=[request]),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY,
                )
            ).results[0]
            if outcome.outcome not in ("held", "stopped"):
                break
            await self._held(outcome.outcome)
        self._written_by_step(key, step, outcome.outcome)
        if outcome.outcome == "granted":
            state.benefit = semantics.granted_benefit(plan, step, outcome)
        return semantics.grant_result(outcome)

    async def _risk(self, step: RiskPlanStep, key: str) -> StepResult:
        request = semantics.risk_request(step, self._run_context(), key=key, now=workflow.now())
        verdict = (
            await workflow.execute_activity_method(
                RiskActivities.evaluate,
                EvaluateRiskInput(requests=[request]),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
        ).results[0]
        return semantics.risk_result(verdict)

    async def _branch(self, step: BranchPlanStep) -> StepResult:
        plan = self._require()[1]
        user_id = self._require_input().user_id
        for index, case in enumerate(step.params.cases):
            if isinstance(case, WhenCase):
                holds = self._holds(case.when, None, step.id)
            else:
                membership = await workflow.execute_activity_method(
                    SegmentActivities.check_membership,
                    semantics.membership_query(plan, case, [user_id], workflow.now()),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY,
                )
                holds = membership.members[0]
            if holds:
                return StepResult(outcome=semantics.case_outcome(index))
        return StepResult(outcome=semantics.BRANCH_DEFAULT)

    def _split(self, step: SplitPlanStep) -> StepResult:
        state, plan = self._require()
        state.variant = semantics.split_variant(plan, step, self._require_input().user_id)
        return StepResult(outcome=state.variant)

    async def _wait(self, step: WaitPlanStep) -> StepResult:
        state, plan = self._require()
        until = semantics.wait_until(plan, step, state.profile, workflow.now())
        await self._flush(current=step.id)
        await self._sleep_until(until)
        state.unconsumed.clear()
        return semantics.wait_result(until)

    async def _wait_for(self, step: WaitForPlanStep) -> StepResult:
        state = self._require()[0]
        self._matched = None
        self._awaiting = step
        # An awaited event that arrived since the last wait (during the steps just run)
        # counts: the customer may act before the reminder's wait begins.
        for event in list(state.unconsumed):
            if self._is_awaited(step, event, step.id):
                self._matched = event
                break
        state.unconsumed.clear()
        await self._flush(current=step.id)
        try:
            await workflow.wait_condition(
                lambda: self._matched is not None or self._leave is not None,
                timeout=timedelta(seconds=step.params.timeout_seconds),
            )
        except TimeoutError:
            pass
        finally:
            self._awaiting = None
        self._check_leave()
        matched, self._matched = self._matched, None
        return semantics.event_result(matched)

    async def _update(self, step: UpdatePlanStep, key: str) -> StepResult:
        state = self._require()[0]
        values = self._values(step.params.set)
        request = semantics.update_request(
            step, key=key, user_id=self._require_input().user_id, now=workflow.now(), values=values
        )
        await workflow.execute_activity_method(
            ProfileActivities.update,
            UpdateProfilesInput(requests=[request]),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        if state.profile is not None:
            state.profile = semantics.updated_profile(step, state.profile, values)
        return semantics.update_result(values)

    async def _call(self, step: CallPlanStep, key: str) -> StepResult:
        values = self._values(step.params.with_)
        request = semantics.call_request(step, self._run_context(), key=key, values=values)
        outcome = (
            await workflow.execute_activity_method(
                CallActivities.run,
                RunCallsInput(requests=[request]),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
        ).results[0]
        return semantics.call_result(outcome)

    # Waiting, pausing, leaving -----------------------------------------------------------

    async def _sleep_until(self, until: datetime) -> None:
        remaining = until - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(lambda: self._leave is not None, timeout=remaining)
            except TimeoutError:
                pass
        self._check_leave()

    async def _await_goal_window(self) -> None:
        """Steps done (or a holdout), goal window open: listen only for the goal."""
        state, plan = self._require()
        goal = plan.goal
        if goal is None or state.converted_at is not None:
            return
        closes = state.entered_at + timedelta(seconds=goal.within_seconds)
        await self._flush(current=None)
        remaining = closes - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self._leave is not None or state.converted_at is not None,
                    timeout=remaining,
                )
            except TimeoutError:
                pass
        self._check_leave()

    def _run_records(self, step: PlanStep) -> RunRecords | None:
        """The run's records for a send or grant activity to write (with the patch)."""
        if not self._records_in_steps:
            return None
        state, plan = self._require()
        # Were this the last step, would the run end at once, and how? Only when there is
        # no goal window left to wait out; the activity then closes the enrolment too.
        nothing_to_await = plan.goal is None or state.converted_at is not None
        self._ending_with_step = "completed" if nothing_to_await else None
        return RunRecords(
            run_key=state.run_key,
            campaign_id=self._require_input().campaign_id,
            pending=state.pending,
            routes=step.routes,
            variant=state.variant,
            converted_at=state.converted_at,
            end_reason=self._ending_with_step,
            entry=self._entry,
        )

    def _written_by_step(
        self, key: str, step: PlanStep, outcome: str | None, *, position: str | None = None
    ) -> None:
        """The step activity wrote the pending records, `key`'s record and the position."""
        if not self._records_in_steps:
            return
        self._require()[0].pending = []
        self._entry = None
        self._recorded_key = key
        self._position_known = True
        if position is None:
            position = semantics.next_step(step.routes, outcome)
            if position is None and self._ending_with_step is not None:
                self._ended_as = self._ending_with_step
        self._written_position = position

    async def _held(self, outcome: str) -> None:
        """A step activity found the campaign paused (`held`) or stopped."""
        if outcome == "stopped":
            raise _Leave("stopped")
        await self._hold_while_paused()

    async def _hold_while_paused(self) -> None:
        """A paused campaign sends and grants nothing: hold here until it resumes or stops."""
        data = self._require_input()
        if data.campaign_id is None:
            return
        held = False
        checks = 0
        while True:
            status = await workflow.execute_local_activity_method(
                JourneyActivities.campaign_state,
                CampaignStateInput(campaign_id=data.campaign_id),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if status.state == "stopped":
                raise _Leave("stopped")
            if status.state != "paused":
                if held:
                    await self._flush(current=self._require()[0].position)
                return
            if not held:
                held = True
                await self._flush(current=self._require()[0].position, status="held")
            self._resumed = False
            recheck = PAUSE_RECHECK
            if self._records_in_steps:
                recheck = min(PAUSE_RECHECK * 2**checks, PAUSE_RECHECK_MAX)
                checks += 1
            try:
                await workflow.wait_condition(
                    lambda: self._resumed or self._leave is not None, timeout=recheck
                )
            except TimeoutError:
                pass
            self._check_leave()

    def _check_leave(self) -> None:
        if self._leave is not None:
            raise _Leave(self._leave)

    # Expressions and records ------------------------------------------------------------

    def _run_context(self) -> semantics.RunContext:
        state, plan = self._require()
        data = self._require_input()
        return semantics.RunContext(
            plan=plan,
            user_id=data.user_id,
            trigger=data.trigger,
            profile=state.profile,
            steps=state.steps,
            benefit=state.benefit,
            workflow_id=workflow.info().workflow_id,
        )

    def _context(self, event: JourneyEvent | None) -> dict[str, Any]:
        return self._run_context().expressions(event, workflow.now())

    def _holds(self, source: str | None, event: JourneyEvent | None, where: str) -> bool:
        """A `when`/`where`: a run-time error makes it false, and is recorded."""
        if source is None:
            return True
        try:
            return bool(evaluate_expression(source, self._context(event)))
        except Exception as error:  # noqa: BLE001 - CEL reports data problems as any exception
            state = self._require()[0]
            state.expression_errors += 1
            key = f"{state.run_key}/{where}/expression/{state.expression_errors}"
            self._record_expression_error(key, where, source, error)
            return False

    def _is_awaited(self, step: WaitForPlanStep, event: JourneyEvent, where: str) -> bool:
        return semantics.awaits(step, event, lambda source: self._holds(source, event, where))

    def _values(self, values: Values) -> dict[str, Any]:
        """`vars`, `set`, `with`: literals as given, expressions evaluated (errors fail the run)."""
        try:
            return semantics.evaluate_values(values, lambda: self._context(None))
        except semantics.ValueFailed as failed:
            workflow.logger.warning("expression failed", extra={"expr": failed.expression})
            state = self._require()[0]
            key = f"{state.run_key}/{state.position}/value/{failed.name}"
            self._record_expression_error(
                key, state.position or "", failed.expression, failed.error
            )
            raise _Leave("failed") from None

    def _record_expression_error(
        self, key: str, step_id: str, source: str, error: Exception
    ) -> None:
        self._require()[0].pending.append(
            StepRecord(
                key=key,
                step_id=step_id,
                step_type="expression",
                outcome="error",
                detail={"expression": source, "error": str(error)[:300]},
                at=workflow.now(),
            )
        )

    def _log(self, step: PlanStep, key: str, result: StepResult) -> None:
        record = StepRecord.of(key, step.id, step.type, result, workflow.now())
        self._require()[0].pending.append(record)

    async def _flush(self, *, current: str | None = None, status: str = "active") -> None:
        """Write pending step records before a wait, so counts of who is where stay true."""
        state = self._require()[0]
        if self._records_in_steps:
            written = self._position_known and self._written_position == current
            if written and not state.pending and status == "active":
                return  # a step activity wrote all of it already
            self._position_known = status == "active"
            self._written_position = current
        await workflow.execute_local_activity_method(
            JourneyActivities.record,
            RecordStepsInput(
                run_key=state.run_key,
                user_id=self._require_input().user_id,
                entry=self._entry,
                records=state.pending,
                current_step=current,
                variant=state.variant,
                converted_at=state.converted_at,
                status="held" if status == "held" else "active",
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        state.pending = []
        self._entry = None

    async def _finish(self, reason: EndReason) -> JourneyOutcome:
        state = self._require()[0]
        await workflow.execute_local_activity_method(
            JourneyActivities.finish,
            FinishJourneyInput(
                run_key=state.run_key,
                user_id=self._require_input().user_id,
                entry=self._entry,
                records=state.pending,
                end_reason=reason,
                variant=state.variant,
                converted_at=state.converted_at,
                at=workflow.now(),
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        state.pending = []
        return JourneyOutcome(end_reason=reason, converted_at=state.converted_at, path=state.path)

    def _require(self) -> tuple[RunState, Plan]:
        assert self._state is not None and self._input is not None
        return self._state, self._input.plan

    def _require_input(self) -> JourneyInput:
        assert self._input is not None
        return self._input
