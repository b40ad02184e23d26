"""The `cjo` command: validate, compile and draw journeys, export the schema."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from cjo.activities.catalog import default_registry
from cjo.dsl import (
    CompiledBundle,
    Diagnostic,
    DslValidationError,
    InMemoryLookup,
    Plan,
    compile_bundle,
    json_schema,
    mermaid,
    validate,
)
from cjo.runtime import stack
from cjo.runtime.settings import get_settings
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
    except DslValidationError as error:
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


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
