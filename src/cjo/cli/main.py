"""The `cjo` command: validate, compile and draw journeys, export the schema."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import click

from cjo.activities.calls.catalog import default_registry
from cjo.cli.client import apply_command, campaign_group, event_command
from cjo.cli.tokens import token_group
from cjo.dsl import (
    CompiledBundle,
    Diagnostic,
    DslSyntaxError,
    DslValidationError,
    InMemoryLookup,
    Plan,
    compile_bundle,
    json_schema,
    mermaid,
    validate,
)
from cjo.runtime import stack
from cjo.runtime.log import configure_logging
from cjo.runtime.settings import get_settings
from cjo.simulate import run as run_simulation
from cjo.store import migrate

EXIT_INVALID = 1
EXIT_USAGE = 2


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise click.UsageError(f"{path}: cannot read: {error.strerror or error}") from None


def _lookup(resource_files: tuple[str, ...]) -> InMemoryLookup:
    """Resources from --resources files act as already published; activities come registered."""
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    for path in resource_files:
        result = validate(_read(path), path, lookup)
        if not result.valid:
            _print_diagnostics(result.diagnostics, sys.stderr)
            raise click.UsageError(f"{path}: resources file has errors (shown above)")
        for document in result.documents:
            lookup.publish(document)
    return lookup


def _print_diagnostics(diagnostics: list[Diagnostic], stream: object = None) -> None:
    for diagnostic in diagnostics:
        click.echo(diagnostic.format_text(), file=stream)  # type: ignore[arg-type]


resources_option = click.option(
    "-r",
    "--resources",
    "resource_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A YAML file of resources to treat as already published (repeatable).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cjo")
def cli() -> None:
    """CJO: customer-journey operations. Journeys in YAML, run durably."""


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
@resources_option
def validate_command(files: tuple[str, ...], output: str, resource_files: tuple[str, ...]) -> None:
    """Check FILES; exit 0 if all are valid, 1 if any has errors, 2 if one cannot be read.

    Each file is a bundle: its documents may refer to each other, and to resources
    given with --resources.
    """
    texts = {path: _read(path) for path in files}
    lookup = _lookup(resource_files)
    results = [validate(text, path, lookup) for path, text in texts.items()]
    diagnostics = [d for result in results for d in result.diagnostics]
    valid = all(result.valid for result in results)
    if output == "json":
        payload = {"valid": valid, "diagnostics": [d.to_json() for d in diagnostics]}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        _print_diagnostics(diagnostics)
        for result in results:
            counts = Counter(str(getattr(doc, "kind")) for doc in result.documents)  # noqa: B009
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
            errors = sum(1 for d in result.diagnostics if d.is_error)
            warnings = len(result.diagnostics) - errors
            state = "valid" if result.valid else f"{errors} error(s)"
            extra = f", {warnings} warning(s)" if warnings else ""
            click.echo(f"{result.file}: {state}{extra} ({summary or 'no documents'})", err=True)
    sys.exit(0 if valid else EXIT_INVALID)


def _compiled(path: str, resource_files: tuple[str, ...]) -> CompiledBundle:
    try:
        return compile_bundle(_read(path), path, _lookup(resource_files))
    except (DslSyntaxError, DslValidationError) as error:
        _print_diagnostics(error.diagnostics, sys.stderr)
        sys.exit(EXIT_INVALID)


def _pick(compiled: CompiledBundle, journey: str | None, path: str) -> list[Plan]:
    if journey is not None:
        if journey not in compiled.plans:
            names = ", ".join(sorted(compiled.plans)) or "none"
            raise click.UsageError(f"{path} has no journey '{journey}' (journeys: {names})")
        return [compiled.plans[journey]]
    if not compiled.plans:
        raise click.UsageError(f"{path} has no Journey document")
    return list(compiled.plans.values())


journey_option = click.option(
    "-j", "--journey", help="Which journey of the file, when it holds several."
)


@cli.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@journey_option
@resources_option
def compile_command(file: str, journey: str | None, resource_files: tuple[str, ...]) -> None:
    """Print the Plan of the journey in FILE as JSON (its `version` is its content hash)."""
    plans = _pick(_compiled(file, resource_files), journey, file)
    if len(plans) > 1:
        names = ", ".join(plan.journey.name for plan in plans)
        raise click.UsageError(f"{file} holds several journeys ({names}); choose one with -j")
    click.echo(plans[0].model_dump_json(indent=2))


@cli.command("graph")
@click.argument("file", type=click.Path(dir_okay=False))
@journey_option
@resources_option
def graph_command(file: str, journey: str | None, resource_files: tuple[str, ...]) -> None:
    """Print each journey in FILE as a Mermaid flowchart, outcomes on the edges."""
    plans = _pick(_compiled(file, resource_files), journey, file)
    for index, plan in enumerate(plans):
        if len(plans) > 1:
            click.echo(("\n" if index else "") + f"%% {plan.journey.name} ({plan.version})")
        click.echo(mermaid(plan), nl=False)


@cli.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
def schema_command(output: str | None) -> None:
    """Print the JSON Schema of CJO documents, for editors and other tools."""
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.group("db")
def db_group() -> None:
    """The database: migrations."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade_command(revision: str) -> None:
    """Migrate the database (CJO_DATABASE_URL, else the embedded one) to REVISION."""
    settings = get_settings()
    info = stack.start(settings, temporal=False)
    migrate.upgrade(info.database_url, revision)
    click.echo(f"database at {migrate.current(info.database_url)}: {_masked(info.database_url)}")


@cli.group("stack")
def stack_group() -> None:
    """The embedded PostgreSQL and Temporal dev server, with data under CJO_HOME (.cjo/)."""


@stack_group.command("start")
@click.option("--no-temporal", is_flag=True, help="Start only PostgreSQL.")
def stack_start_command(no_temporal: bool) -> None:
    """Start what is not running yet (safe to repeat), and migrate the database."""
    settings = get_settings()
    try:
        info = stack.start(settings, temporal=not no_temporal)
    except stack.StackError as error:
        raise click.ClickException(str(error)) from None
    migrate.upgrade(info.database_url)
    click.echo(f"postgres  {_masked(info.database_url)}")
    if info.temporal_address:
        click.echo(f"temporal  {info.temporal_address}")
    if info.temporal_ui:
        click.echo(f"web ui    {info.temporal_ui}")


@stack_group.command("stop")
def stack_stop_command() -> None:
    """Stop the embedded servers (servers given by CJO_* URLs are left alone)."""
    stopped = stack.stop(get_settings())
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def _masked(url: str) -> str:
    """A URL fit to print: no password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"


@cli.command("simulate")
@click.argument("file", metavar="JOURNEY.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--user",
    "user_file",
    required=True,
    metavar="PROFILE.json",
    type=click.Path(dir_okay=False),
    help="The customer: the DSL's `user` fields, plus optional consents {channel: bool}.",
)
@click.option(
    "--events",
    "events_file",
    metavar="EVENTS.yaml",
    type=click.Path(dir_okay=False),
    help="What the customer does: a list of {after: <Duration>, event: <name>, props: {...}}.",
)
@click.option(
    "--at",
    metavar="TIMESTAMP",
    help="Start the simulated clock here (ISO 8601, now or later; no offset: the user's zone).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["json", "pretty"]),
    default="json",
    show_default=True,
    help="json: one object per step, then the end; pretty: a timeline to read.",
)
@journey_option
@resources_option
def simulate_command(
    file: str,
    user_file: str,
    events_file: str | None,
    at: str | None,
    output: str,
    journey: str | None,
    resource_files: tuple[str, ...],
) -> None:
    """Run one customer through the journey in JOURNEY.yaml in compressed time.

    The real interpreter and activities run on Temporal's time-skipping test server with a
    throw-away database: days pass in moments and nothing is delivered. Prints one JSON
    object per step ({"t", "step", "type", "outcome"}, with the rendered text of sends and
    the benefit of grants), then {"t", "end"}. Exit 1: the journey is invalid; 2: a bad
    profile, events file or --at.
    """
    sys.exit(
        run_simulation(
            file,
            user_file,
            events_file,
            at=at,
            journey_name=journey,
            resources=resource_files,
            output="pretty" if output == "pretty" else "json",
        )
    )


@cli.command("worker")
@click.option("--max-activities", default=100, show_default=True, help="Concurrent activities.")
@click.option("--max-workflow-tasks", default=100, show_default=True, help="Concurrent tasks.")
def worker_command(max_activities: int, max_workflow_tasks: int) -> None:
    """Run a Temporal worker with every workflow and activity until SIGINT or SIGTERM.

    Uses CJO_DATABASE_URL and CJO_TEMPORAL_ADDRESS, or the embedded stack. Start more
    workers to scale out; a stopped worker finishes the activities in hand first. It also
    delivers the outbox (see `cjo dispatcher`) unless CJO_DISPATCHER_IN_WORKER=false.
    """
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(_run_worker(max_activities, max_workflow_tasks))


async def _run_worker(max_activities: int, max_workflow_tasks: int) -> None:
    from cjo.runtime.temporal import connect
    from cjo.store.db import make_engine, make_sessions
    from cjo.worker import WorkerTuning, build_dispatcher, build_worker, run_until_signalled

    settings = get_settings()
    info = await asyncio.to_thread(stack.start, settings)
    await asyncio.to_thread(migrate.upgrade, info.database_url)
    engine = make_engine(info.database_url, pool_size=settings.database_pool_size)
    try:
        client = await connect(settings, info.temporal_address)
        tuning = WorkerTuning(
            max_concurrent_activities=max_activities,
            max_concurrent_workflow_tasks=max_workflow_tasks,
        )
        sessions = make_sessions(engine)
        worker = build_worker(client, sessions, task_queue=settings.task_queue, tuning=tuning)
        dispatcher = (
            build_dispatcher(settings, sessions, client) if settings.dispatcher_in_worker else None
        )
        beside = " with a dispatcher" if dispatcher else ""
        click.echo(
            f"worker{beside} on task queue '{settings.task_queue}' at {info.temporal_address}"
        )
        await run_until_signalled(worker, dispatcher=dispatcher)
    finally:
        await engine.dispose()


@cli.command("dispatcher")
def dispatcher_command() -> None:
    """Deliver the outbox to the channel providers until SIGINT or SIGTERM.

    Providers come from CJO_PROVIDERS (JSON: business line or "*" -> channel -> provider);
    batches, polling, leases and concurrency from CJO_DISPATCHER_*. Run as many as you
    like beside each other and beside workers: none delivers a message another has in
    hand. A stopped dispatcher finishes its batches in hand first.
    """
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(_run_dispatcher())


async def _run_dispatcher() -> None:
    from cjo.runtime.temporal import connect
    from cjo.store.db import make_engine, make_sessions
    from cjo.worker import build_dispatcher, dispatch_until_signalled

    settings = get_settings()
    info = await asyncio.to_thread(stack.start, settings)
    await asyncio.to_thread(migrate.upgrade, info.database_url)
    engine = make_engine(info.database_url, pool_size=settings.database_pool_size)
    try:
        # Temporal carries the `message_delivered` / `message_failed` events to journeys.
        client = await connect(settings, info.temporal_address)
        dispatcher = build_dispatcher(settings, make_sessions(engine), client)
        click.echo(f"dispatcher for the outbox at {_masked(info.database_url)}")
        await dispatch_until_signalled(dispatcher)
    finally:
        await engine.dispose()


@cli.command("dev")
@click.option("--port", default=8000, show_default=True, help="Port of the HTTP API.")
def dev_command(port: int) -> None:
    """Start the embedded stack, a worker and the API in the foreground; Ctrl-C stops all."""
    from cjo.cli.dev import run_dev

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(run_dev(settings, api_port=port, echo=click.echo))


cli.add_command(token_group)
cli.add_command(apply_command)
cli.add_command(campaign_group)
cli.add_command(event_command)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
