"""`cjo simulate`: one customer through a journey in compressed time, nothing delivered.

The real interpreter runs with the real activities on Temporal's time-skipping test
server, against a throw-away PostgreSQL seeded with the customer and the bundle's
resources. Sends are only decided (rows in `messages`, which no dispatcher reads here) and
grants only recorded, so the run can be read back as a timeline: one JSON object per step,
then the end. A 30-day journey takes a few seconds, most of them spent starting
PostgreSQL and the test server, which start side by side.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

import structlog

from cjo.runtime.log import configure_logging
from cjo.simulate.runner import HORIZON, SimulationError, simulate
from cjo.simulate.scenario import (
    JourneyInvalidError,
    Scenario,
    ScenarioError,
    ScriptedEvent,
    SimulatedUser,
    SourceFile,
    load_scenario,
)
from cjo.simulate.timeline import (
    EndLine,
    EventLine,
    Simulation,
    StepLine,
    json_lines,
    pretty_lines,
)

__all__ = [
    "EXIT_INVALID",
    "EXIT_USAGE",
    "HORIZON",
    "EndLine",
    "EventLine",
    "JourneyInvalidError",
    "Scenario",
    "ScenarioError",
    "ScriptedEvent",
    "SimulatedUser",
    "Simulation",
    "SimulationError",
    "SourceFile",
    "StepLine",
    "json_lines",
    "load_scenario",
    "pretty_lines",
    "run",
    "simulate",
]

EXIT_INVALID = 1
EXIT_USAGE = 2
# Loggers whose routine chatter (worker start, migrations) is not the operator's business.
QUIETED = {"temporalio": logging.ERROR, "alembic": logging.WARNING}


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Logs on stderr, warnings and worse, without the SDK's and Alembic's routine chatter."""
    if not structlog.is_configured():
        # Unconfigured structlog prints to stdout, which belongs to the timeline.
        configure_logging("WARNING", json=False)
    saved = {name: logging.getLogger(name).level for name in QUIETED}
    for name, level in QUIETED.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def run(
    journey: Path | str,
    user: Path | str,
    events: Path | str | None = None,
    *,
    at: str | None = None,
    journey_name: str | None = None,
    resources: Sequence[Path | str] = (),
    output: Literal["json", "pretty"] = "json",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Simulate and print the timeline; returns the exit code (0, 1 invalid, 2 usage)."""
    out = out or sys.stdout
    err = err or sys.stderr

    def note(message: str) -> None:
        err.write(f"note: {message}\n")

    try:
        scenario = load_scenario(
            Path(journey),
            Path(user),
            Path(events) if events is not None else None,
            at=at,
            journey_name=journey_name,
            resources=[Path(path) for path in resources],
        )
        with _quiet_logs():
            simulation = asyncio.run(simulate(scenario, note))
    except JourneyInvalidError as error:
        err.writelines(diagnostic.format_text() + "\n" for diagnostic in error.diagnostics)
        return EXIT_INVALID
    except ScenarioError as error:
        err.write(f"Error: {error}\n")
        return EXIT_USAGE
    except SimulationError as error:
        err.write(f"Error: {error}\n")
        return EXIT_INVALID
    lines = pretty_lines(simulation) if output == "pretty" else json_lines(simulation)
    out.writelines(line + "\n" for line in lines)
    out.flush()
    return 0
