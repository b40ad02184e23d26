"""`cjo apply`, `cjo campaign` and `cjo event` against a real API on a real socket.

The API runs under uvicorn in the test's event loop, over the test's database (and, where
campaigns and events need it, the Temporal test server with a real worker); the commands
run in a thread, as a user would run them, with `--api` and `--api-key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cjo.activities.calls.catalog import default_registry
from cjo.api import create_app
from cjo.cli.client.campaign import stats_text
from cjo.cli.main import cli
from cjo.control.principals import ApiKeys, CreateApiKeyInput, Role
from cjo.dsl import InMemoryLookup, validate
from cjo.store.db import SessionFactory
from tests.api.support import EXAMPLES, add_customer, count
from tests.workflows.conftest import client, env, task_queue  # noqa: F401
from tests.workflows.support import morning

CARD_ACTIVATION = EXAMPLES / "card_activation.yaml"
CARD = ["tier=gold", "card_id=c-1", "card_last4=1234", "tier_name=金卡"]
CARD_PROPS = [option for prop in CARD for option in ("--prop", prop)]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the test decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class LiveApi:
    url: str
    sessions: SessionFactory
    home: Path

    async def mint(self, role: Role = "admin", business_lines: tuple[str, ...] = ("*",)) -> str:
        created = await ApiKeys(self.sessions).create(
            CreateApiKeyInput(
                name=f"cli test {role}",
                role=role,
                business_lines=list(business_lines),
                created_by="tests",
            )
        )
        return created.key

    async def cjo(self, *args: str, key: str | None = None, api: str | None = None) -> Result:
        """Run `cjo ARGS` against this API, with `key` when given (else none at all)."""
        options = ["--api", api or self.url] + (["--api-key", key] if key else [])
        # The first word or two name the command; the client options follow them.
        split = 2 if args[0] == "campaign" else 1
        argv = [*args[:split], *options, *args[split:]]
        # No key or address from the environment of whoever runs the tests, and a home of
        # the test's own: no dev-admin-key there unless the test puts one.
        environment = {"CJO_API_KEY": None, "CJO_API_URL": None, "CJO_HOME": str(self.home)}
        runner = CliRunner()
        # In a thread: the API answers on this event loop meanwhile.
        return await asyncio.to_thread(runner.invoke, cli, argv, env=environment)


@pytest.fixture(autouse=True)
def server_logs_aside() -> Iterator[None]:
    """The API logs in this process; its lines must not mix into the command's output."""
    with structlog.testing.capture_logs():
        yield


@contextlib.asynccontextmanager
async def serving(sessions: SessionFactory, home: Path, **wiring: Any) -> AsyncIterator[LiveApi]:
    app = create_app(sessions=sessions, **wiring)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # No lifespan: the app is given what it needs, and must start nothing of its own.
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serve = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serve.done():
                await serve  # why it could not start
            await asyncio.sleep(0.01)
        yield LiveApi(f"http://127.0.0.1:{port}", sessions, home)
    finally:
        server.should_exit = True
        await serve
        listener.close()


@pytest.fixture
async def db_api(sessions: SessionFactory, tmp_path: Path) -> AsyncIterator[LiveApi]:
    """The API over the database alone: resources, keys, reads."""
    async with serving(sessions, tmp_path / "home") as live:
        yield live


@pytest.fixture
async def full_api(
    sessions: SessionFactory,
    client: Client,  # noqa: F811 - the fixtures imported above
    task_queue: str,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[LiveApi]:
    """The whole API: a real worker serves the campaigns and journeys it starts."""
    async with serving(sessions, tmp_path / "home", temporal=client, task_queue=task_queue) as live:
        yield live


def fields(output: str) -> dict[str, str]:
    """Printed `name  value` lines as a dict."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in output.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def rows(output: str) -> dict[str, list[str]]:
    """A printed table's rows by their first cell."""
    return {line.split()[0]: line.split() for line in output.splitlines() if line.strip()}


async def test_apply_prints_what_changed_and_rejects_bad_bundles_with_positions(
    db_api: LiveApi, tmp_path: Path
) -> None:
    admin = await db_api.mint()
    applied = await db_api.cjo("apply", str(CARD_ACTIVATION), key=admin)
    assert applied.exit_code == 0, applied.output
    table = rows(applied.stdout)
    assert table["KIND"] == ["KIND", "NAME", "BUSINESS", "LINE", "VERSION", "REVISION", "CHANGED"]
    journey = table["Journey"]
    assert journey[1:3] == ["card-activation", "credit-card"] and journey[-2:] == ["1", "yes"]
    assert f"{CARD_ACTIVATION}: 9 document(s), 9 changed" in applied.stderr

    again = await db_api.cjo("apply", str(CARD_ACTIVATION), "--json", key=admin)
    assert again.exit_code == 0, again.output
    answer = json.loads(again.stdout)
    assert {entry["changed"] for entry in answer["applied"]} == {False}
    (entry,) = [entry for entry in answer["applied"] if entry["kind"] == "Journey"]
    assert entry["version"] == journey[3]  # the same version: nothing new was stored

    # A typo in a step reference: the API's diagnostics are those `cjo validate` gives.
    bad = tmp_path / "bad.yaml"
    source = CARD_ACTIVATION.read_text("utf-8").replace("timeout: nudge\n", "timeout: nudgee\n")
    bad.write_text(source, "utf-8")
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    expected = [d.format_text() for d in validate(source, str(bad), lookup).diagnostics]
    assert expected and all(str(bad) in line for line in expected)
    before = await count(db_api.sessions, "resource_versions")
    refused = await db_api.cjo("apply", str(bad), key=admin)
    assert refused.exit_code == 1
    assert "Error: 422 Invalid bundle" in refused.stderr
    assert f"{bad}: not applied" in refused.stderr
    for line in expected:
        assert line in refused.stderr.splitlines()
    assert await count(db_api.sessions, "resource_versions") == before
    assert "Traceback" not in refused.output

    checked = await db_api.cjo("apply", "--dry-run", str(bad), str(CARD_ACTIVATION), key=admin)
    assert checked.exit_code == 1
    assert f"{bad}: 1 error(s)" in checked.stdout and f"{CARD_ACTIVATION}: valid" in checked.stdout
    assert expected[0] in checked.stderr

    missing = await db_api.cjo("apply", str(tmp_path / "nowhere.yaml"), key=admin)
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


async def test_campaign_life_cycle_through_the_cli(
    env: WorkflowEnvironment,  # noqa: F811 - the fixture imported above
    full_api: LiveApi,
) -> None:
    maker = await full_api.mint("admin")
    checker = await full_api.mint("approver", ("credit-card",))
    assert (await full_api.cjo("apply", str(CARD_ACTIVATION), key=maker)).exit_code == 0
    await morning(env)  # no quiet hours in the way of the welcome SMS
    async with httpx.AsyncClient(base_url=full_api.url, headers={"X-API-Key": maker}) as http:
        await add_customer(http, "u1")

    created = await full_api.cjo(
        "campaign", "create", "card-activation", "-b", "credit-card", "-q", key=maker
    )
    assert created.exit_code == 0, created.output
    campaign = created.stdout.strip()
    shown = await full_api.cjo("campaign", "get", campaign, key=maker)
    assert shown.exit_code == 0, shown.output
    shown_fields = fields(shown.stdout)
    assert shown_fields["id"] == campaign and shown_fields["state"] == "draft"
    assert shown_fields["journey"] == "card-activation"
    assert shown_fields["business line"] == "credit-card"

    submitted = await full_api.cjo("campaign", "submit", campaign, key=maker)
    assert submitted.exit_code == 0, submitted.output
    assert f"campaign {campaign} is submitted: audience 1, 1 approval(s) needed" in (
        submitted.stdout
    )
    own = await full_api.cjo("campaign", "approve", campaign, key=maker)
    assert own.exit_code == 1
    assert "Error: 403 Self-approval" in own.stderr and own.stdout == ""
    approved = await full_api.cjo(
        "campaign", "approve", campaign, "--comment", "copy checked", key=checker
    )
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.strip() == f"campaign {campaign} is approved"
    async with httpx.AsyncClient(base_url=full_api.url, headers={"X-API-Key": maker}) as http:
        review = (await http.get(f"/v1/campaigns/{campaign}/approvals")).json()
    assert review["approved_by"] == [checker.split(".")[0]]  # the CLI sent the checker's key
    assert review["approvals"][0]["comment"] == "copy checked"

    launched = await full_api.cjo("campaign", "launch", campaign, key=maker)
    assert launched.exit_code == 0, launched.output
    assert launched.stdout.strip() == f"campaign {campaign} is running"

    now = (await env.get_current_time()).isoformat()
    sent = await full_api.cjo(
        "event", "card_issued", "--user", "u1", *CARD_PROPS, "--id", "e1", "--ts", now, key=maker
    )
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.strip() == "event e1: accepted"
    repeated = await full_api.cjo(
        "event", "card_issued", "--user", "u1", *CARD_PROPS, "--id", "e1", "--ts", now, key=maker
    )
    assert repeated.stdout.strip() == "event e1: a duplicate: its id was seen before"

    stats: dict[str, Any] = {}
    for _ in range(400):  # the run is routed after the answer, then walks to the wait
        figures = await full_api.cjo("campaign", "stats", campaign, "--json", key=maker)
        assert figures.exit_code == 0, figures.output
        stats = json.loads(figures.stdout)
        if stats["steps"]["await_activation"]["waiting"] or stats["ended"]:
            break
        await asyncio.sleep(0.05)
    assert stats["campaign_id"] == campaign
    assert stats["steps"]["await_activation"]["waiting"] == 1, stats
    table = await full_api.cjo("campaign", "stats", campaign, key=maker)
    assert table.exit_code == 0, table.output
    steps = rows(table.stdout)
    # In the journey's order, as written: a funnel reads top down.
    (journey,) = [
        d for d in yaml.safe_load_all(CARD_ACTIVATION.read_text()) if d["kind"] == "Journey"
    ]
    written = [step["id"] for step in journey["spec"]["steps"]]
    assert [line.split()[0] for line in table.stdout.splitlines()[1 : len(written) + 1]] == written
    assert steps["STEP"] == ["STEP", "ENTERED", "WAITING", "OUTCOMES"]
    assert steps["risk_check"] == ["risk_check", "1", "0", "pass", "1"]
    assert steps["await_activation"][:3] == ["await_activation", "0", "1"]  # waiting there
    assert steps["nudge"] == ["nudge", "0", "0"]
    for step, figures in stats["steps"].items():  # every step, as the JSON has it
        outcomes = ", ".join(f"{name} {n}" for name, n in figures["outcomes"].items())
        assert steps[step] == [step, str(figures["entered"]), str(figures["waiting"])] + (
            outcomes.split()
        )
    assert "ended: none yet" in table.stdout

    for move, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        moved = await full_api.cjo("campaign", move, campaign, key=maker)
        assert moved.exit_code == 0, moved.output
        assert moved.stdout.strip() == f"campaign {campaign} is {state}", move
    listed = await full_api.cjo("campaign", "list", "--state", "stopped", key=maker)
    assert listed.exit_code == 0, listed.output
    assert rows(listed.stdout)[campaign][1:4] == ["stopped", "credit-card", "card-activation"]
    final = await full_api.cjo("campaign", "get", campaign, "--json", key=checker)
    assert json.loads(final.stdout)["state"] == "stopped"
    again = await full_api.cjo("campaign", "resume", campaign, key=maker)
    assert again.exit_code == 1 and "Error: 409 Conflict" in again.stderr


async def test_events_from_files_go_in_batches(full_api: LiveApi, tmp_path: Path) -> None:
    operator = await full_api.mint("operator")
    lines = tmp_path / "events.jsonl"
    events = [
        {"id": f"e{n}", "user_id": f"u{n % 7}", "name": "login", "ts": "2026-03-01T10:00:00+08:00"}
        for n in range(1200)
    ]
    lines.write_text("".join(json.dumps(event) + "\n" for event in events), "utf-8")
    sent = await full_api.cjo("event", "--file", str(lines), key=operator)
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.strip() == "1200 events in 2 request(s): 1200 accepted, 0 duplicate(s)"
    assert await count(full_api.sessions, "events") == 1200

    listed = tmp_path / "events.yaml"
    listed.write_text(
        "- {id: e1, user_id: u1, name: login, ts: 2026-03-01T10:00:00+08:00}\n"
        "- {user_id: u2, name: fund_viewed, props: {fund: F1, amount: 5000}}\n",
        "utf-8",
    )
    answers = await full_api.cjo("event", "--file", str(listed), "--json", key=operator)
    assert answers.exit_code == 0, answers.output
    assert json.loads(answers.stdout) == {"accepted": 1, "duplicates": 1}

    single = await full_api.cjo(
        "event", "fund_viewed", "--user", "u3", "--prop", "fund=007", "--prop", "amount:=5000",
        "--prop", "tags:=[\"new\"]", "--id", "one", "--json", key=operator,
    )  # fmt: skip
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout) == {"accepted": 1, "duplicates": 0}
    async with full_api.sessions() as session:
        connection = await session.connection()
        query = text("SELECT props FROM events WHERE client_id = 'one'")
        stored = await connection.execute(query)
        assert stored.scalar_one() == {"fund": "007", "amount": 5000, "tags": ["new"]}
    typo = await full_api.cjo("event", "x", "--user", "u1", "--prop", "n:=five", key=operator)
    assert typo.exit_code == 2 and "'five' is not JSON" in typo.stderr

    refused = await full_api.cjo(
        "event", "login", "--user", "u1", key=await full_api.mint("viewer")
    )
    assert refused.exit_code == 1 and "Error: 403" in refused.stderr
    unparsable = tmp_path / "broken.jsonl"
    unparsable.write_text('{"user_id": "u1", "name": "login"}\n{oops\n', "utf-8")
    broken = await full_api.cjo("event", "--file", str(unparsable), key=operator)
    assert broken.exit_code == 2 and f"{unparsable}:2: not JSON" in broken.stderr
    assert await count(full_api.sessions, "events") == 1202


async def test_no_api_no_key_and_the_dev_key(db_api: LiveApi) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = await db_api.cjo("campaign", "list", api=closed, key="key_x.y")
    assert unreachable.exit_code == 2
    assert f"cannot reach the CJO API at {closed}" in unreachable.stderr
    assert "Traceback" not in unreachable.output

    keyless = await db_api.cjo("campaign", "list")
    assert keyless.exit_code == 1
    assert "Error: 401 Unauthorized" in keyless.stderr
    assert "hint: no API key was given" in keyless.stderr

    wrong = await db_api.cjo("campaign", "list", key="key_0000000000000000.nope")
    assert wrong.exit_code == 1
    assert "the API key is not valid" in wrong.stderr and "--api-key" in wrong.stderr

    # Without --api-key or CJO_API_KEY, the key `cjo dev` keeps is used.
    db_api.home.mkdir()
    kept = db_api.home / "dev-admin-key"
    kept.write_text(await db_api.mint() + "\n", "utf-8")
    listed = await db_api.cjo("campaign", "list")
    assert listed.exit_code == 0, listed.output
    assert "no campaigns" in listed.stderr
    kept.write_text("key_0000000000000000.stale\n", "utf-8")
    stale = await db_api.cjo("campaign", "list")
    assert stale.exit_code == 1 and f"the key was read from {kept}" in stale.stderr


def test_stats_table_shows_variants_holdout_and_lift() -> None:
    stats = {
        "campaign_id": "c1",
        "steps": {
            "await_login": {"entered": 900, "waiting": 120, "outcomes": {"event": 301}},
            "message_test": {"entered": 900, "waiting": 0, "outcomes": {"rate_led": 452}},
        },
        "ended": {"converted": 210, "completed": 570},
        "variants": {
            "care_led": {"entrants": 448, "conversions": 92, "rate": 0.2054},
            "rate_led": {"entrants": 452, "conversions": 118, "rate": 0.2611},
        },
        "holdout": {"entrants": 100, "conversions": 0, "rate": 0.0},
        "lift": {"rate_led": {"value": 0.2611, "ci_low": 0.054, "ci_high": 0.3066}},
    }
    shown = stats_text(stats, order=["message_test", "await_login", "gone"])
    lines = shown.splitlines()
    assert lines[1].split() == ["message_test", "900", "0", "rate_led", "452"]
    assert lines[2].split() == ["await_login", "900", "120", "event", "301"]
    assert "ended: converted 210, completed 570" in lines
    groups = rows(shown)
    assert groups["VARIANT"][:4] == ["VARIANT", "ENTRANTS", "CONVERSIONS", "RATE"]
    assert groups["rate_led"] == ["rate_led", "452", "118", "26.1%", "+26.1", "[+5.4,", "+30.7]"]
    assert groups["care_led"] == ["care_led", "448", "92", "20.5%", "-"]  # no lift: none given
    assert groups["(holdout)"] == ["(holdout)", "100", "0", "0.0%", "-"]
