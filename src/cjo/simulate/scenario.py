"""What `cjo simulate` reads: the journey bundle, the customer, the scripted events, `--at`.

All of it is read and checked before anything starts. A journey with errors raises
`JourneyInvalidError` with the DSL's diagnostics; any other bad input raises one
`ScenarioError` line naming the file and the entry, so an operator can fix it without
reading a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cjo.activities.calls.catalog import default_registry
from cjo.activities.people.profiles import EVENT_NAME_PATTERN, ProfileInput
from cjo.dsl import Diagnostic, InMemoryLookup, Plan, compile_bundle, validate
from cjo.dsl._types import DURATION_PATTERN, duration_seconds
from cjo.runtime.channels import CHANNEL_NAMES
from cjo.steps.rules import zone_of

# An `--at` this close behind the clock means "now": the command took a moment to start.
AT_GRACE = timedelta(minutes=1)


class ScenarioError(ValueError):
    """A profile, events file or `--at` that cannot be used (the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class SimulatedUser:
    profile: ProfileInput
    consents: dict[str, bool]
    consents_given: bool


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    """An event the customer does `after` the simulated start."""

    after: timedelta
    name: str
    props: dict[str, Any] = field(default_factory=dict)


class _EventEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str | int
    event: str = Field(pattern=EVENT_NAME_PATTERN)
    props: dict[str, Any] = Field(default_factory=dict)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror or error}") from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg']}" if where else str(problem["msg"])


def read_user(path: Path) -> SimulatedUser:
    """A profile JSON: the DSL's `user` fields, plus optional `consents` {channel: bool}."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ScenarioError(f"{path}: not JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a JSON object with the user's fields")
    consents = data.pop("consents", None)
    try:
        profile = ProfileInput.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(f"{path}: {_first_problem(error)}") from None
    if consents is None:
        # A profile without "consents" consents to every channel.
        return SimulatedUser(profile, dict.fromkeys(CHANNEL_NAMES, True), consents_given=False)
    if not isinstance(consents, dict) or not all(isinstance(v, bool) for v in consents.values()):
        raise ScenarioError(f"{path}: consents: expected an object of channel: true/false")
    unknown = sorted(set(consents) - set(CHANNEL_NAMES))
    if unknown:
        raise ScenarioError(
            f"{path}: consents: unknown channel {unknown[0]!r} (one of {', '.join(CHANNEL_NAMES)})"
        )
    return SimulatedUser(profile, dict(consents), consents_given=True)


def after_of(value: str | int) -> timedelta:
    """A Duration since the start; unlike a step's Duration, zero is allowed here."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if re.match(DURATION_PATTERN, value) and not re.search(r"[1-9]", value):
        return timedelta(0)
    return timedelta(seconds=duration_seconds(value))


def read_events(path: Path) -> list[ScriptedEvent]:
    """A YAML list of `{after: <Duration>, event: <name>, props: {...}}`, in time order."""
    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ScenarioError(f"{path}: not YAML{where}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ScenarioError(f"{path}: expected a list of {{after, event, props}} entries")
    events: list[ScriptedEvent] = []
    for number, item in enumerate(data, start=1):
        try:
            entry = _EventEntry.model_validate(item)
        except ValidationError as error:
            raise ScenarioError(f"{path}: entry {number}: {_first_problem(error)}") from None
        try:
            after = after_of(entry.after)
        except ValueError as error:
            raise ScenarioError(f"{path}: entry {number}: after: {error}") from None
        events.append(ScriptedEvent(after, entry.event, entry.props))
    # Stable: events given for the same moment keep the file's order.
    return sorted(events, key=lambda event: event.after)


def read_at(text: str | None, zone: ZoneInfo, now: datetime) -> datetime | None:
    """`--at`: None for now; a time without an offset is read in the customer's time zone."""
    if text is None or text.strip().lower() == "now":
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScenarioError(
            f"--at: {text!r} is not an ISO 8601 timestamp, e.g. 2026-12-01T10:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    value = value.astimezone(UTC)
    if value < now - AT_GRACE:
        raise ScenarioError(
            f"--at: {text} is in the past; the simulated clock starts now "
            f"({now.astimezone(zone):%Y-%m-%d %H:%M %Z}) or later"
        )
    return value if value > now else None


# The scenario -----------------------------------------------------------------------------


class JourneyInvalidError(ValueError):
    """The journey bundle (or a resources file) has errors; `.diagnostics` lists them."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{sum(d.is_error for d in diagnostics)} error(s)")
        self.diagnostics = diagnostics


@dataclass(frozen=True, slots=True)
class SourceFile:
    file: str
    text: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a simulation needs, read and checked before anything starts."""

    plan: Plan
    journey: SourceFile
    resources: list[SourceFile]
    user: SimulatedUser
    events: list[ScriptedEvent] = field(default_factory=list)
    start: datetime | None = None  # None: now

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.user.profile.timezone, self.plan.contact_policy.timezone)


def _source(path: Path) -> SourceFile:
    return SourceFile(str(path), _read_text(path))


def _compile(journey: SourceFile, resources: list[SourceFile], name: str | None) -> Plan:
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    for source in resources:
        result = validate(source.text, source.file, lookup)
        if not result.valid:
            raise JourneyInvalidError(result.diagnostics)
        for document in result.documents:
            lookup.publish(document)
    result = validate(journey.text, journey.file, lookup)
    if not result.valid:
        raise JourneyInvalidError(result.diagnostics)
    plans = compile_bundle(journey.text, journey.file, lookup).plans
    if name is not None:
        if name not in plans:
            names = ", ".join(sorted(plans)) or "none"
            raise ScenarioError(f"{journey.file} has no journey '{name}' (journeys: {names})")
        return plans[name]
    if len(plans) != 1:
        if not plans:
            raise ScenarioError(f"{journey.file} has no Journey document")
        names = ", ".join(sorted(plans))
        raise ScenarioError(f"{journey.file} holds several journeys ({names}); choose one with -j")
    return next(iter(plans.values()))


def load_scenario(
    journey: Path,
    user: Path,
    events: Path | None = None,
    *,
    at: str | None = None,
    journey_name: str | None = None,
    resources: Sequence[Path] = (),
    now: datetime | None = None,
) -> Scenario:
    """Read and check the inputs: `JourneyInvalidError` for the DSL, `ScenarioError` else."""
    journey_source = _source(journey)
    resource_sources = [_source(path) for path in resources]
    plan = _compile(journey_source, resource_sources, journey_name)
    simulated_user = read_user(user)
    scripted = read_events(events) if events is not None else []
    zone = zone_of(simulated_user.profile.timezone, plan.contact_policy.timezone)
    start = read_at(at, zone, now or datetime.now(UTC))
    return Scenario(plan, journey_source, resource_sources, simulated_user, scripted, start)
