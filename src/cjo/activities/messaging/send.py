"""Messaging: the decision half of a send, recorded in the outbox.

`MessagingActivities.send` decides for each request whether, where and when a message may go
(address, consent, quiet hours in the user's local time, frequency caps, rendering, opt-out)
and records the decision as a `messages` row: `pending` (the outbox a dispatcher delivers
from) or `suppressed` with its reason. A marketing message also gets a `contact_log` row in
the same transaction, taken under the user's advisory lock, so caps hold under any
concurrency. A `delay` (quiet hours with action `delay`) writes nothing: the workflow sleeps
until the window opens and asks again with the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity

from cjo.activities._base import lock, new_id
from cjo.activities.messaging._contact_rules import (
    Contact,
    Rendered,
    address_of,
    choose_locale,
    lacks_opt_out,
    needs_opt_out,
    over_cap,
    quiet_until,
    render_content,
    unreachable,
    user_zone,
)
from cjo.activities.messaging._outbox import (
    Decided,
    contacts_since,
    insert_messages,
    messages_by_key,
    send_context,
)
from cjo.activities.messaging.links import LinkTracker
from cjo.activities.runs.records import (
    HOLDS,
    RunWrite,
    holds_of,
    step_done,
    step_put_off,
    write_runs,
)
from cjo.dsl import TemplateRenderError
from cjo.runtime.log import get_logger
from cjo.runtime.settings import get_settings
from cjo.steps.contracts import (
    SendDecision,
    SendMessageInput,
    SendMessageResult,
    SendRequest,
    TemplateRef,
)
from cjo.steps.run import Hold, UserProfile, expression_context
from cjo.steps.semantics import delayed_result, send_result
from cjo.store.db import SessionFactory, transaction

__all__ = ["MessagingActivities"]

PENDING = "pending"
SUPPRESSED = "suppressed"
# Bounds one transaction: its advisory locks, its IN lists and its multi-row INSERT.
REQUESTS_PER_TRANSACTION = 500

SuppressReason = Literal[
    "unknown_user",
    "no_address",
    "no_consent",
    "quiet_hours",
    "frequency_cap",
    "no_opt_out",
    "render_error",
]

_log = get_logger(__name__)


class MessagingActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="messaging.send")
    async def send(self, batch: SendMessageInput) -> SendMessageResult:
        """Decide every request, in order; a key already decided returns its first decision.

        Each user's decisions are taken in one transaction under `lock(business_line,
        user_id)`; several users share a transaction so that a page costs a few statements.
        """
        decisions: list[SendDecision] = []
        requests = batch.requests
        for start in range(0, len(requests), REQUESTS_PER_TRANSACTION):
            chunk = requests[start : start + REQUESTS_PER_TRANSACTION]
            async with transaction(self._sessions) as connection:
                decided = await _decide_chunk(connection, chunk)
                await write_runs(connection, _run_writes(chunk, decided))
                decisions.extend(decided)
        return SendMessageResult(results=decisions)


def _hold(request: SendRequest, holds: dict[str, Hold]) -> Hold | None:
    run = request.run
    return None if run is None or run.campaign_id is None else holds.get(run.campaign_id)


def _run_writes(
    requests: Sequence[SendRequest], decisions: Sequence[SendDecision]
) -> list[RunWrite]:
    """For journey sends: the run's pending records, this step's record, its next step; a
    quiet-hours delay keeps the user at the step."""
    writes = []
    for request, decision in zip(requests, decisions, strict=True):
        run = request.run
        if run is None or decision.outcome in HOLDS:
            continue
        if decision.outcome == "delay" and decision.until is not None:
            writes.append(step_put_off(request, run, "send", delayed_result(decision.until)))
        else:
            writes.append(step_done(request, run, "send", send_result(decision)))
    return writes


async def _decide_chunk(
    connection: AsyncConnection, requests: Sequence[SendRequest]
) -> list[SendDecision]:
    await lock(connection, [(r.business_line, r.user_id) for r in requests])
    user_ids = sorted({r.user_id for r in requests})
    campaign_ids = sorted({r.run.campaign_id for r in requests if r.run and r.run.campaign_id})
    context = await send_context(connection, [r.key for r in requests], user_ids, campaign_ids)
    recorded, profiles = context.recorded, context.profiles
    contacts = await contacts_since(
        connection,
        user_ids=user_ids,
        business_lines=sorted({r.business_line for r in requests}),
        since=_earliest_counted(requests),
    )

    holds = holds_of(context.campaigns)
    fresh: list[Decided] = []
    outcomes: list[Decided | datetime | Hold] = []
    for request in requests:
        hold = _hold(request, holds)
        if hold is not None:
            outcomes.append(hold)  # a paused or stopped campaign: decide nothing now
            continue
        row = recorded.get(request.key)
        if row is None:
            person = (request.business_line, request.user_id)
            verdict = _decide(request, profiles.get(request.user_id), contacts[person])
            if isinstance(verdict, datetime):
                outcomes.append(verdict)
                continue
            row = recorded[request.key] = verdict
            fresh.append(row)
            if _counts_as_contact(row):
                contacts[person].append(Contact(request.journey, row.channel, request.at))
        outcomes.append(row)

    inserted = await insert_messages(connection, fresh)
    lost = [r.key for r in fresh if r.key not in inserted]
    if lost:
        # Only a key reused by another user's concurrent request gets here; its first
        # decision stands.
        winners = await messages_by_key(connection, lost)
        outcomes = [winners.get(o.key, o) if isinstance(o, Decided) else o for o in outcomes]
    return [
        _decision(request, outcome) for request, outcome in zip(requests, outcomes, strict=True)
    ]


def _decide(
    request: SendRequest, profile: UserProfile | None, contacts: Sequence[Contact]
) -> Decided | datetime:
    """A new `messages` row for this request, or the moment to ask again (quiet hours)."""
    if profile is None:
        return _row(request, request.channel, request.template, reason="unknown_user")
    chosen = _first_reachable(request, profile)
    if isinstance(chosen, str):
        return _row(request, request.channel, request.template, reason=chosen)
    channel, template = chosen
    if request.marketing:
        # Journey limits tighten the business line's, never loosen them: both windows
        # apply, a `skip` in either suppresses, else wait until every window is open.
        zone = user_zone(profile.timezone, request.policy.timezone)
        quiet = [
            (window, until)
            for window in (request.limits.quiet_hours, request.policy.quiet_hours)
            if window is not None and (until := quiet_until(request.at, window, zone))
        ]
        if any(window.action == "skip" for window, _ in quiet):
            return _row(request, channel, template, reason="quiet_hours")
        if quiet:
            return max(until for _, until in quiet)
        if over_cap(
            contacts,
            journey=request.journey,
            channel=channel,
            at=request.at,
            journey_rules=request.limits.frequency,
            policy_rules=request.policy.frequency,
        ):
            return _row(request, channel, template, reason="frequency_cap")
    locale = choose_locale(template.spec, profile.locale)
    # The id comes first: tracked links carry it, and they are made while rendering.
    message_id = new_id()
    tracker = _link_tracker(message_id)
    try:
        rendered = render_content(
            template.spec, locale, _render_context(request, profile), track=tracker
        )
    except TemplateRenderError as exc:
        _log.warning(
            "messaging.render_error", key=request.key, template=template.name, error=exc.message
        )
        return _row(request, channel, template, reason="render_error")
    if needs_opt_out(channel, marketing=request.marketing) and lacks_opt_out(
        rendered.body, request.policy.opt_out_pattern
    ):
        return _row(request, channel, template, reason="no_opt_out")
    return _row(
        request,
        channel,
        template,
        address=address_of(channel, profile),
        rendered=rendered,
        message_id=message_id,
        links=tracker.links,
    )


def _link_tracker(message_id: str) -> LinkTracker:
    settings = get_settings()
    return LinkTracker(
        message_id,
        base_url=settings.public_base_url,
        secret=settings.link_secret.get_secret_value(),
    )


def _first_reachable(
    request: SendRequest, profile: UserProfile
) -> tuple[str, TemplateRef] | SuppressReason:
    """The step's channel or the first fallback that reaches the user; else why the step's
    own channel does not (the operator chose that channel, so its reason explains most)."""
    options = [(request.channel, request.template)]
    options += [(option.channel, option.template) for option in request.fallback]
    reasons = [
        unreachable(
            channel,
            profile,
            profile.consents,
            marketing=request.marketing,
            consent_modes=request.policy.consent,
        )
        for channel, _ in options
    ]
    for option, reason in zip(options, reasons, strict=True):
        if reason is None:
            return option
    first_reason = reasons[0]
    assert first_reason is not None
    return first_reason


def _render_context(request: SendRequest, profile: UserProfile) -> dict[str, Any]:
    return expression_context(
        user=profile.as_context(),
        trigger=request.trigger,
        steps=request.steps,
        journey=request.journey,
        version=request.journey_version,
        now=request.at,
        vars=request.vars,
        benefit=request.benefit,
    )


def _row(
    request: SendRequest,
    channel: str,
    template: TemplateRef,
    *,
    reason: SuppressReason | None = None,
    address: str | None = None,
    rendered: Rendered | None = None,
    message_id: str | None = None,
    links: Sequence[str] = (),
) -> Decided:
    return Decided(
        id=message_id or new_id(),
        key=request.key,
        business_line=request.business_line,
        journey=request.journey,
        workflow_id=request.workflow_id,
        step_id=request.step_id,
        user_id=request.user_id,
        channel=channel,
        template=template.name,
        template_version=template.version,
        locale=None if rendered is None else rendered.locale,
        marketing=request.marketing,
        status=SUPPRESSED if reason is not None else PENDING,
        reason=reason,
        address=address,
        subject=None if rendered is None else rendered.subject,
        body=None if rendered is None else rendered.body,
        html=None if rendered is None else rendered.html,
        not_before=request.at,
        links=list(links),
    )


def _counts_as_contact(row: Decided) -> bool:
    return row.marketing and row.status == PENDING


def _decision(request: SendRequest, outcome: Decided | datetime | Hold) -> SendDecision:
    if isinstance(outcome, str):
        return SendDecision(key=request.key, outcome=outcome)
    if isinstance(outcome, datetime):
        return SendDecision(key=request.key, outcome="delay", until=outcome)
    return SendDecision(
        key=request.key,
        outcome="suppressed" if outcome.status == SUPPRESSED else "sent",
        message_id=outcome.id,
        channel=outcome.channel,
        fallback_used=(outcome.channel, outcome.template)
        != (request.channel, request.template.name),
        reason=outcome.reason,
    )


def _earliest_counted(requests: Sequence[SendRequest]) -> datetime | None:
    """The start of the longest window any of these marketing sends' caps looks back over."""
    windows = [
        rule.per_seconds
        for request in requests
        if request.marketing
        for rule in (*request.limits.frequency, *request.policy.frequency)
    ]
    if not windows:
        return None
    return min(request.at for request in requests) - timedelta(seconds=max(windows))
