"""`cjo apply`: publish YAML bundles through the API, or only check them (--dry-run)."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

import click

from cjo.cli.client.api import CLIENT_EPILOG, EXIT_REFUSED, Api, ApiRefusal, with_api
from cjo.cli.client.text import format_diagnostic, table

# The API's `?file=` (the name its diagnostics report) is at most this long.
MAX_FILE_NAME = 256


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise click.UsageError(f"{path}: cannot read: {error.strerror or error}") from None


def _shown_name(path: str) -> str:
    """The file name the API's diagnostics report; long paths keep their end."""
    return path if len(path) <= MAX_FILE_NAME else "…" + path[-(MAX_FILE_NAME - 1) :]


@click.command("apply", epilog=CLIENT_EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only check the bundles against the DSL and what is published; store nothing.",
)
@with_api
def apply_command(api: Api, files: tuple[str, ...], dry_run: bool) -> None:
    """Publish the YAML bundles FILES through the API (`POST /v1/resources`).

    Each file is applied whole or not at all: each document becomes a new version unless
    it is unchanged. Prints kind, name, business line, version and whether it changed. A
    bundle with errors is not applied: its diagnostics (file:line:column: code message)
    go to stderr, the other files are still applied, and the exit status is 1.
    """
    # Every file is read before anything is sent: a typo in the last path applies nothing.
    bundles = {path: _read_bytes(path) for path in files}
    endpoint = "/v1/resources/validate" if dry_run else "/v1/resources"
    rows: list[tuple[object, ...]] = []
    failed = False
    for path, bundle in bundles.items():
        try:
            answer = api.call(
                "POST",
                endpoint,
                content=bundle,
                params={"file": _shown_name(path)},
                headers={"Content-Type": "application/yaml"},
            )
        except ApiRefusal as refusal:
            if refusal.status != HTTPStatus.UNPROCESSABLE_ENTITY or "diagnostics" not in (
                refusal.problem
            ):
                raise
            # An invalid bundle stops only itself: the others may be fine, as with kubectl.
            refusal.show()
            click.echo(f"{path}: not applied", err=True)
            failed = True
            continue
        if api.as_json:
            api.emit(answer)
        diagnostics = answer.get("diagnostics") or []
        for diagnostic in diagnostics:
            click.echo(format_diagnostic(diagnostic), err=True)
        if dry_run:
            valid = bool(answer.get("valid"))
            failed = failed or not valid
            if not api.as_json:
                errors = sum(1 for d in diagnostics if d.get("severity") == "error")
                warnings = len(diagnostics) - errors
                state = "valid" if valid else f"{errors} error(s)"
                extra = f", {warnings} warning(s)" if warnings else ""
                click.echo(f"{path}: {state}{extra}")
            continue
        applied = answer.get("applied") or []
        changed = sum(1 for entry in applied if entry.get("changed"))
        click.echo(f"{path}: {len(applied)} document(s), {changed} changed", err=True)
        rows.extend(
            (
                entry.get("kind"),
                entry.get("name"),
                entry.get("business_line"),
                entry.get("version"),
                entry.get("revision"),
                entry.get("changed"),
            )
            for entry in applied
        )
    if rows and not api.as_json:
        headers = ("KIND", "NAME", "BUSINESS LINE", "VERSION", "REVISION", "CHANGED")
        click.echo(table(headers, rows, right={4}))
    if failed:
        raise SystemExit(EXIT_REFUSED)
