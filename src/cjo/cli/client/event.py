"""`cjo event`: send one event, or a file of them in batches, to `POST /v1/events`."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from cjo.cli.client.api import CLIENT_EPILOG, Api, with_api

# The API takes at most this many events a request (its `max_batch` setting's default).
MAX_EVENTS_PER_REQUEST = 1000


def _prop(pair: str) -> tuple[str, Any]:
    """`KEY=text` is a string; `KEY:=json` a JSON value (5000, true, ["a"]), as in HTTPie.

    Text stays text: a card number or a phone number never turns into a number by accident.
    """
    name, equals, text = pair.partition("=")
    if not equals or not name.rstrip(":"):
        raise click.BadParameter(f"{pair!r} is not KEY=VALUE or KEY:=JSON", param_hint="--prop")
    if not name.endswith(":"):
        return name, text
    try:
        return name[:-1], json.loads(text)
    except ValueError:
        raise click.BadParameter(f"{pair!r}: {text!r} is not JSON", param_hint="--prop") from None


def _timestamp(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--ts") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no offset: add one (+08:00, Z)", param_hint="--ts")
    return moment.isoformat()


def _now() -> str:
    return datetime.now().astimezone().isoformat()


def _new_id() -> str:
    return f"cli-{uuid.uuid4().hex}"


def _jsonable(value: object) -> str:
    """YAML reads timestamps as datetimes; the API takes them as ISO 8601 text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def load_events(path: str) -> list[dict[str, Any]]:
    """The events in a file: JSON lines (`-` is stdin), or a JSON or YAML list (or a
    mapping with `events`), by its suffix. A missing `id` or `ts` is made up."""
    suffix = Path(path).suffix.lower()
    try:
        with click.open_file(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as error:
        raise click.UsageError(f"{path}: cannot read: {error}") from None
    items: Any
    try:
        if suffix in (".yaml", ".yml"):
            items = yaml.safe_load(text)
        elif suffix == ".json":
            items = json.loads(text)
        else:
            items = [
                _json_line(line, number, path)
                for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()
            ]
    except (yaml.YAMLError, ValueError) as error:
        raise click.UsageError(f"{path}: cannot parse: {error}") from None
    if isinstance(items, dict) and "events" in items:
        items = items["events"]
    if not isinstance(items, list):
        raise click.UsageError(f"{path}: expected a list of events")
    events = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not item.get("user_id") or not item.get("name"):
            raise click.UsageError(f"{path}: event {number} needs at least user_id and name")
        event: dict[str, Any] = {
            "id": item.get("id") or _new_id(),
            "props": {},
            "ts": item.get("ts") or _now(),
        }
        events.append(json.loads(json.dumps({**event, **item}, default=_jsonable)))
    return events


def _json_line(line: str, number: int, path: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as error:
        raise click.UsageError(f"{path}:{number}: not JSON: {error}") from None


@click.command("event", epilog=CLIENT_EPILOG)
@click.argument("name", required=False)
@click.option("--user", "user_id", metavar="USER_ID", help="Whom the event is about.")
@click.option(
    "--prop",
    "props",
    multiple=True,
    metavar="KEY=TEXT|KEY:=JSON",
    help="A property (repeatable): KEY=TEXT for text, KEY:=JSON for a number, true/false, "
    "a list... (amount:=5000).",
)
@click.option("--id", "event_id", help="Your id for the event: re-sending it is harmless.")
@click.option("--ts", help="When it happened, ISO 8601 with an offset (default: now).")
@click.option(
    "--file",
    "events_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Send these events instead: JSON lines (.jsonl, or - for stdin), or a .json or "
    ".yaml list of {id, user_id, name, props, ts}.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_EVENTS_PER_REQUEST),
    default=MAX_EVENTS_PER_REQUEST,
    show_default=True,
    help="Events per request with --file.",
)
@with_api
def event_command(
    api: Api,
    name: str | None,
    user_id: str | None,
    props: tuple[str, ...],
    event_id: str | None,
    ts: str | None,
    events_file: str | None,
    batch_size: int,
) -> None:
    """Send the event NAME about --user to the API, or the events of --file.

    The API stores each event once per id (a repeat counts as a duplicate) and routes it
    to the journeys waiting for it. Without --id an event gets a new id, so re-sending
    it counts twice: give ids to make retries safe.
    """
    if events_file is not None:
        if name or user_id or props or event_id or ts:
            raise click.UsageError(
                "give either NAME with --user (and --prop, --id, --ts) or --file"
            )
        events = load_events(events_file)
        if not events:
            raise click.UsageError(f"{events_file}: no events")
    else:
        if not name:
            raise click.UsageError("give the event's NAME (or --file)")
        if not user_id:
            raise click.UsageError("give --user: whom the event is about")
        events = [
            {
                "id": event_id or _new_id(),
                "user_id": user_id,
                "name": name,
                "props": dict(_prop(pair) for pair in props),
                "ts": _timestamp(ts) if ts else _now(),
            }
        ]
    _send_events(api, events, batch_size)


def _send_events(api: Api, events: list[dict[str, Any]], batch_size: int) -> None:
    batches = [events[start : start + batch_size] for start in range(0, len(events), batch_size)]
    accepted = duplicates = 0
    for index, batch in enumerate(batches):
        try:
            answer = api.call("POST", "/v1/events", json_body={"events": batch})
        except click.ClickException:
            if index:
                sent = index * batch_size
                click.echo(
                    f"the first {sent} event(s) ({index} request(s)) were stored; "
                    f"request {index + 1} of {len(batches)} failed and the rest were not sent",
                    err=True,
                )
            raise
        if api.as_json:
            api.emit(answer)
        accepted += int(answer.get("accepted", 0))
        duplicates += int(answer.get("duplicates", 0))
    if api.as_json:
        return
    if len(events) == 1:
        verdict = "accepted" if accepted else "a duplicate: its id was seen before"
        click.echo(f"event {events[0]['id']}: {verdict}")
    else:
        click.echo(
            f"{len(events)} events in {len(batches)} request(s): "
            f"{accepted} accepted, {duplicates} duplicate(s)"
        )
