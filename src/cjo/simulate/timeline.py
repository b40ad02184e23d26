"""A simulated run as a timeline: read from what the run recorded, printed two ways.

The database is the witness, not the interpreter's return value: the step log says what
each step did and when (in workflow time), `messages` holds the rendered text of each
send decision and `grants` the benefit given, so the timeline shows exactly what a real
run would have recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from cjo.dsl import Plan, PlanStep
from cjo.dsl.plan import UpdatePlanStep
from cjo.store.db import SessionFactory

_STEPS = text(
    "SELECT s.step_id, s.step_type, s.outcome, s.detail, s.at,"
    " m.channel, m.subject, m.body, m.reason AS message_reason,"
    " g.benefit, g.benefit_type, g.value, g.unit, g.quantity, g.code, g.expires_at"
    " FROM step_log s"
    " LEFT JOIN messages m ON m.id = s.detail ->> 'message_id'"
    " LEFT JOIN grants g ON g.id = s.detail ->> 'grant_id'"
    " WHERE s.run_key = :run ORDER BY s.id"
)
_ENROLMENT = text(
    "SELECT run_key, end_reason, ended_at, converted_at FROM enrolments"
    " WHERE workflow_id = :workflow ORDER BY entered_at DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class StepLine:
    """One step log row; `extra` holds what the type has to show (text, benefit, ...)."""

    t: datetime
    step: str
    type: str
    outcome: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventLine:
    """An event the simulation delivered; `note` says when it reached no run."""

    t: datetime
    name: str
    props: dict[str, Any]
    trigger: bool = False
    note: str | None = None


@dataclass(frozen=True, slots=True)
class EndLine:
    t: datetime
    reason: str
    converted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Simulation:
    journey: str
    business_line: str
    version: str
    user_id: str
    zone: ZoneInfo
    start: datetime
    steps: list[StepLine]
    events: list[EventLine]
    end: EndLine


def stamp(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _extra(row: Any, zone: ZoneInfo, step: PlanStep | None) -> dict[str, Any]:
    detail: dict[str, Any] = row.detail or {}
    if "left" in detail:
        # The run had to leave (stop, exit, failure) while this step was under way.
        return {"left": detail["left"]}
    if row.step_type == "expression":
        return {"expression": detail.get("expression"), "error": detail.get("error")}
    if row.outcome == "failed":
        return {"error": detail.get("error")}
    if row.outcome == "delayed":
        return {"until": stamp(datetime.fromisoformat(detail["until"]), zone)}
    if row.step_type == "send":
        shown: dict[str, Any] = {"channel": row.channel or detail.get("channel")}
        if detail.get("fallback_used"):
            shown["fallback"] = True
        if row.subject:
            shown["subject"] = row.subject
        if row.body:
            shown["text"] = row.body
        if row.outcome == "suppressed":
            shown["reason"] = row.message_reason or detail.get("reason")
        return shown
    if row.step_type == "grant":
        if row.benefit is None:
            return {"reason": detail.get("reason")}
        benefit = {
            "name": row.benefit,
            "type": row.benefit_type,
            "value": _number(row.value),
            "unit": row.unit,
            "quantity": row.quantity,
            "code": row.code,
            "expires_at": stamp(row.expires_at, zone) if row.expires_at else None,
        }
        return {"benefit": benefit}
    if row.step_type == "wait_for" and detail.get("event"):
        return {"event": detail["event"]}
    if row.step_type == "risk" and detail.get("matched"):
        return {"rules": detail["matched"]}
    if row.step_type == "update":
        # The log keeps the values set; the tags come from the step, which always applies them.
        tags: dict[str, list[str]] = {}
        if isinstance(step, UpdatePlanStep):
            given = {"tags_add": step.params.tags_add, "tags_remove": step.params.tags_remove}
            tags = {name: names for name, names in given.items() if names}
        return {"set": detail.get("set", {}), **tags}
    if row.step_type == "call" and detail:
        return {"result": detail}
    if row.step_type == "end" and detail.get("reason"):
        return {"reason": detail["reason"]}
    return {}


async def read_run(
    sessions: SessionFactory, workflow_id: str, plan: Plan, zone: ZoneInfo
) -> tuple[list[StepLine], EndLine]:
    """The run's steps, in the order the interpreter logged them, and how it ended."""
    async with sessions() as session:
        connection = await session.connection()
        enrolment = (await connection.execute(_ENROLMENT, {"workflow": workflow_id})).one()
        rows = await connection.execute(_STEPS, {"run": enrolment.run_key})
        steps = [
            StepLine(
                row.at,
                row.step_id,
                row.step_type,
                row.outcome,
                _extra(row, zone, plan.steps.get(row.step_id)),
            )
            for row in rows
        ]
    end = EndLine(enrolment.ended_at, enrolment.end_reason, enrolment.converted_at)
    return steps, end


# JSON lines ------------------------------------------------------------------------------


def json_lines(simulation: Simulation) -> Iterator[str]:
    zone = simulation.zone
    for step in simulation.steps:
        line = {"t": stamp(step.t, zone), "step": step.step, "type": step.type}
        yield _dumps({**line, "outcome": step.outcome, **step.extra})
    end = simulation.end
    last: dict[str, Any] = {"t": stamp(end.t, zone), "end": end.reason}
    if end.converted_at is not None:
        last["converted_at"] = stamp(end.converted_at, zone)
    yield _dumps(last)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# The pretty timeline ----------------------------------------------------------------------


def _when(moment: datetime, simulation: Simulation) -> str:
    local = moment.astimezone(simulation.zone)
    day = (local.date() - simulation.start.astimezone(simulation.zone).date()).days
    return f"day {day} {local:%H:%M}"


def _props(props: dict[str, Any]) -> str:
    return json.dumps(props, ensure_ascii=False) if props else ""


def _step_info(step: StepLine, simulation: Simulation) -> str:
    extra = step.extra
    if "error" in extra:
        where = f"{extra['expression']}: " if extra.get("expression") else ""
        return f"{where}{extra['error']}"
    if "until" in extra:
        until = datetime.fromisoformat(extra["until"])
        return f"quiet hours, held until {_when(until, simulation)}"
    if step.type == "send":
        channel = extra.get("channel") or ""
        if step.outcome == "suppressed":
            return f"{channel}: not sent ({extra.get('reason')})"
        subject = f"{extra['subject']} / " if extra.get("subject") else ""
        via = " (fallback)" if extra.get("fallback") else ""
        return f"{channel}{via}: {subject}{extra.get('text', '')}"
    if "benefit" in extra:
        benefit = extra["benefit"]
        count = f" ×{benefit['quantity']}" if benefit["quantity"] != 1 else ""
        expires = benefit["expires_at"][:10] if benefit["expires_at"] else "never"
        return (
            f"{benefit['name']}: {benefit['value']} {benefit['unit']}{count},"
            f" code {benefit['code']}, expires {expires}"
        )
    if step.type == "grant":
        return f"not granted ({extra.get('reason')})"
    if "event" in extra:
        return f"on {extra['event']}"
    if "rules" in extra:
        return "rules: " + ", ".join(str(rule) for rule in extra["rules"])
    if "set" in extra:
        tags = [f"+{tag}" for tag in extra.get("tags_add", [])]
        tags += [f"-{tag}" for tag in extra.get("tags_remove", [])]
        return " ".join([_props(extra["set"]), *tags]).strip()
    if "result" in extra:
        return _props(extra["result"])
    return str(extra.get("reason") or "")


def pretty_lines(simulation: Simulation) -> Iterator[str]:
    """A timeline for people: day and local time, step, type → outcome, and what it did."""
    start = simulation.start.astimezone(simulation.zone)
    yield (
        f"{simulation.journey} ({simulation.business_line}, plan {simulation.version})"
        f" for user {simulation.user_id}; day 0 is {start:%Y-%m-%d}, times in {simulation.zone}"
    )
    # (moment, rank on ties, name, type → outcome, what it did): events before the steps
    # they cause, the end last.
    rows: list[tuple[datetime, int, str, str, str]] = []
    for event in simulation.events:
        mark = "▶" if event.trigger else "•"
        about = [_props(event.props), f"({event.note})" if event.note else ""]
        rows.append((event.t, 0, f"{mark} {event.name}", "", "  ".join(filter(None, about))))
    for step in simulation.steps:
        left = step.extra.get("left")
        outcome = f"{step.type} → {step.outcome or ('left, ' + left if left else 'done')}"
        rows.append((step.t, 1, step.step, outcome, _step_info(step, simulation)))
    end = simulation.end
    converted = ""
    if end.converted_at is not None and end.reason != "converted":
        converted = f"converted {_when(end.converted_at, simulation)}"
    rows.append((end.t, 2, "■ end", end.reason, converted))
    rows.sort(key=lambda row: (row[0], row[1]))  # stable: steps keep the log's order
    whens = [_when(row[0], simulation) for row in rows]
    when_width = max(len(when) for when in whens)
    name_width = max(len(row[2]) for row in rows)
    outcome_width = max(len(row[3]) for row in rows)
    for when, (_, _, name, outcome, info) in zip(whens, rows, strict=True):
        info = " ⏎ ".join(info.splitlines())  # an email body keeps to its row
        line = f"{when:<{when_width}}  {name:<{name_width}}  {outcome:<{outcome_width}}  {info}"
        yield line.rstrip()
