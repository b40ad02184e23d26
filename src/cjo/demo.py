"""`make demo` for now: validate every bundled example, show its diagnostics and draw it.

The durable-execution work turns this into a live run on the embedded stack.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cjo.activities.catalog import default_registry
from cjo.dsl import InMemoryLookup, JourneyDocument, compile_bundle, mermaid, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(examples: Path = EXAMPLES) -> int:
    """Returns the number of examples that did not validate."""
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    files = sorted(examples.glob("*.yaml"))
    if not files:
        click.echo(f"no examples found in {examples}", err=True)
        return 1
    failures = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        shown = path.relative_to(examples.parent) if examples.parent in path.parents else path
        result = validate(text, str(shown), lookup)
        rule = "═" * 78
        click.echo(f"\n{rule}\n{shown}")
        for document in result.documents:
            if isinstance(document, JourneyDocument):
                title = document.metadata.title or document.name
                click.echo(f"  {title} · form {document.spec.form} · line {document.business_line}")
        for diagnostic in result.diagnostics:
            click.echo("  " + diagnostic.format_text())
        if not result.valid:
            failures += 1
            click.secho("  ✗ invalid", fg="red")
            continue
        kinds = sorted({str(getattr(d, "kind")) for d in result.documents})  # noqa: B009
        click.secho(
            f"  ✓ valid: {len(result.documents)} documents ({', '.join(kinds)})", fg="green"
        )
        for name, plan in compile_bundle(text, str(shown), lookup).plans.items():
            click.echo(f"\n  Journey {name}, plan version {plan.version}:\n")
            click.echo("    " + mermaid(plan).rstrip("\n").replace("\n", "\n    "))
    click.echo(f"\n{len(files) - failures} of {len(files)} examples valid.")
    return failures


def main() -> None:
    sys.exit(1 if run() else 0)


if __name__ == "__main__":
    main()
