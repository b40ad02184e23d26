"""`make demo`: CJO end to end on this machine, in a few minutes.

1. Validate every bundled example and draw the demo journeys.
2. Start the embedded stack (PostgreSQL, the Temporal dev server), a worker and the API.
3. Through the HTTP API: apply the examples, load synthetic customers, launch an audience
   campaign and an event-triggered one, and post customers' events.
4. Show live progress, then each campaign's per-step counts.

The demo journeys (examples/demo/) wait seconds where the examples wait days. The stack
keeps running afterwards so you can look around (Temporal UI at http://127.0.0.1:8233);
`.venv/bin/cjo stack stop` stops it.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from cjo.activities.calls.catalog import default_registry
from cjo.control.principals import ApiKeys, CreateApiKeyInput
from cjo.dsl import InMemoryLookup, compile_bundle, mermaid, validate
from cjo.runtime.log import configure_logging
from cjo.runtime.settings import get_settings

if TYPE_CHECKING:
    from cjo.cli.dev import Services
    from cjo.demo.standins import Delivered

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_BUNDLE = EXAMPLES / "demo" / "demo_journeys.yaml"
SAVERS, CARD_HOLDERS = 120, 80
PROGRESS_LIMIT = timedelta(minutes=4)


def validate_examples() -> int:
    """Validate every example; returns how many are invalid."""
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    files = sorted(EXAMPLES.glob("*.yaml")) + [DEMO_BUNDLE]
    failures = 0
    click.secho("\n== 1. The examples", bold=True)
    for path in files:
        shown = path.relative_to(ROOT)
        result = validate(path.read_text(encoding="utf-8"), str(shown), lookup)
        for diagnostic in result.diagnostics:
            click.echo("   " + diagnostic.format_text())
        kinds = sorted({str(getattr(d, "kind")) for d in result.documents})  # noqa: B009
        mark = (
            click.style("valid", fg="green") if result.valid else click.style("INVALID", fg="red")
        )
        click.echo(f"   {mark}  {shown}  ({', '.join(kinds)})")
        failures += 0 if result.valid else 1
    compiled = compile_bundle(DEMO_BUNDLE.read_text(encoding="utf-8"), str(DEMO_BUNDLE), lookup)
    for name, plan in compiled.plans.items():
        click.echo(f"\n   {name} (plan {plan.version}), as Mermaid:\n")
        click.echo("     " + mermaid(plan).rstrip("\n").replace("\n", "\n     "))
    return failures


def customers(rng: random.Random, run: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Synthetic customers, new for each demo run: the journeys' re-entry rules would
    (rightly) refuse the customers of an earlier run."""
    surnames, given = "王李张刘陈杨赵黄周吴", "伟芳娜敏静丽强磊军洋"
    people: list[dict[str, Any]] = []
    savers: list[str] = []
    holders: list[str] = []
    for n in range(SAVERS + CARD_HOLDERS):
        user_id = f"demo-{run}-{n:04d}"
        saver = n < SAVERS
        people.append(
            {
                "id": user_id,
                "name": rng.choice(surnames) + rng.choice(given),
                "phone": f"138{n:08d}",
                "email": f"{user_id}@example.com",
                "locale": "zh-CN" if n % 4 else "en",
                "timezone": "Asia/Shanghai",
                "lifecycle": rng.choice(["dormant", "churned"]) if saver else "growing",
                "attrs": {
                    "aum": rng.randrange(60_000, 900_000) if saver else rng.randrange(0, 40_000)
                },
                "addresses": {"push": f"push-token-{n}"},
            }
        )
        (savers if saver else holders).append(user_id)
    return people, savers, holders


def event(user: str, name: str, **props: Any) -> dict[str, Any]:
    stamp = datetime.now(UTC)
    return {
        "id": f"{name}-{user}-{stamp.timestamp()}",
        "user_id": user,
        "name": name,
        "props": props,
        "ts": stamp.isoformat(),
    }


async def post(api: httpx.AsyncClient, path: str, **kwargs: Any) -> Any:
    answer = await api.post(path, **kwargs)
    if answer.status_code >= 400:
        raise click.ClickException(f"{path}: {answer.status_code} {answer.text[:500]}")
    return answer.json() if answer.content else None


async def drive(api: httpx.AsyncClient, approver: httpx.AsyncClient) -> None:
    """`api` makes (applies, creates, submits, launches); `approver` checks (approves)."""
    rng = random.Random(20261124)
    click.secho("\n== 3. Through the API", bold=True)
    for path in [*sorted(EXAMPLES.glob("*.yaml")), DEMO_BUNDLE]:
        applied = await post(
            api,
            "/v1/resources",
            content=path.read_bytes(),
            headers={"content-type": "application/yaml"},
        )
        journeys = [a for a in applied["applied"] if a["kind"] == "Journey"]
        for journey in journeys:
            click.echo(
                f"   applied {journey['business_line']}/{journey['name']} @ {journey['version']}"
            )
    people, savers, holders = customers(rng, datetime.now(UTC).strftime("%y%m%d%H%M%S"))
    await post(api, "/v1/users/batch", json={"users": people})
    for person in people:
        answer = await api.put(
            f"/v1/users/{person['id']}/consents",
            json={"consents": {"sms": True, "push": True, "email": True}, "source": "demo"},
        )
        answer.raise_for_status()
    click.echo(f"   loaded {len(people)} synthetic customers ({len(savers)} dormant savers)")
    campaigns = {}
    for journey in ("dormant-savers-demo", "card-activation-demo"):
        created = await post(
            api, "/v1/campaigns", json={"journey": journey, "business_line": "demo"}
        )
        # Maker-checker: submitted by one principal, approved by another, then launched.
        await post(api, f"/v1/campaigns/{created['id']}/submit")
        await post(approver, f"/v1/campaigns/{created['id']}/approve")
        await post(api, f"/v1/campaigns/{created['id']}/launch")
        campaigns[journey] = created["id"]
        click.echo(f"   launched campaign {created['id']} for {journey} (submitted, approved)")
    await asyncio.sleep(1)
    issued = [
        event(user, "card_issued", card_id=f"card-{user}", card_last4=f"{n:04d}", tier="gold")
        for n, user in enumerate(holders)
    ]
    await post(api, "/v1/events", json={"events": issued})
    click.echo(f"   posted {len(issued)} card_issued events")
    await progress(api, campaigns, savers, holders, rng)


async def progress(
    api: httpx.AsyncClient,
    campaigns: dict[str, str],
    savers: list[str],
    holders: list[str],
    rng: random.Random,
) -> None:
    click.secho("\n== 4. Live progress", bold=True)
    started = time.monotonic()
    later: list[tuple[float, dict[str, Any]]] = sorted(
        [
            (rng.uniform(3, 12), event(u, "card_activated", card_id=f"card-{u}"))
            for u in holders
            if rng.random() < 0.45
        ]
        + [(rng.uniform(3, 20), event(u, "login")) for u in savers if rng.random() < 0.35]
        + [
            (rng.uniform(5, 25), event(u, "deposit", amount=5000))
            for u in savers
            if rng.random() < 0.15
        ],
        key=lambda item: item[0],
    )
    while time.monotonic() - started < PROGRESS_LIMIT.total_seconds():
        elapsed = time.monotonic() - started
        due = [item for item in later if item[0] <= elapsed]
        later = [item for item in later if item[0] > elapsed]
        if due:
            await post(api, "/v1/events", json={"events": [payload for _, payload in due]})
        lines, done = [], True
        for journey, campaign_id in campaigns.items():
            stats = (await api.get(f"/v1/campaigns/{campaign_id}/stats")).json()
            ended = sum(stats["ended"].values())
            waiting = sum(step["waiting"] for step in stats["steps"].values())
            entered = max([s["entered"] for s in stats["steps"].values()] + [0])
            lines.append(f"{journey}: in flight {waiting:>3} · ended {ended:>3}")
            expected = len(savers) if journey.startswith("dormant") else len(holders)
            done = done and ended >= expected and entered > 0
        click.echo(f"   t+{elapsed:5.1f}s  " + "  |  ".join(lines))
        if done and not later:
            break
        await asyncio.sleep(2)
    click.secho("\n== 5. Per-step counts", bold=True)
    for journey, campaign_id in campaigns.items():
        stats = (await api.get(f"/v1/campaigns/{campaign_id}/stats")).json()
        click.echo(f"\n   {journey} (campaign {campaign_id})")
        click.echo(f"   {'step':<18}{'entered':>8}{'waiting':>8}  outcomes")
        by_reach = sorted(stats["steps"].items(), key=lambda item: (-item[1]["entered"], item[0]))
        for step_id, step in by_reach:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(step["outcomes"].items()))
            click.echo(f"   {step_id:<18}{step['entered']:>8}{step['waiting']:>8}  {outcomes}")
        click.echo(f"   ended: {stats['ended']}")
        for name, variant in sorted(stats.get("variants", {}).items()):
            click.echo(f"   variant {name}: {variant}")
        if stats.get("holdout", {}).get("entrants"):
            click.echo(f"   holdout: {stats['holdout']}")
        await api.post(f"/v1/campaigns/{campaign_id}/stop")


async def live() -> None:
    from cjo.cli.dev import services
    from cjo.demo.standins import sandbox_providers
    from cjo.runtime.stack import free_port

    click.secho("\n== 2. Starting PostgreSQL, Temporal, a worker and the API", bold=True)
    with sandbox_providers() as sandbox:
        # Every channel goes to local stand-in providers: nothing leaves the machine.
        settings = get_settings().model_copy(update={"providers": sandbox.providers()})
        async with services(settings, api_port=free_port()) as running:
            await _demo(running)
        show_deliveries(sandbox.delivered)
    click.echo(
        "\nThe embedded PostgreSQL and Temporal keep running (data in .cjo/); "
        "stop them with `.venv/bin/cjo stack stop`."
    )


def show_deliveries(delivered: Delivered) -> None:
    click.secho("\n== 6. What the (stand-in) channel providers received", bold=True)
    for channel, count in sorted(delivered.by_channel.items()):
        sample = delivered.samples.get(channel, "")
        click.echo(f"   {channel:<8}{count:>6}   e.g. {sample[:70]!r}")
    click.echo(
        f"   retries of a message already taken: {delivered.repeats}; "
        f"requests with a bad signature: {delivered.bad_signatures}"
    )
    click.echo(
        "   (messages the outbox still held from earlier runs on this stack are delivered too)"
    )


async def _demo(running: Services) -> None:
    click.echo(f"   API          {running.api_url}/docs")
    click.echo(f"   Temporal UI  {running.info.temporal_ui}")
    checker = await ApiKeys(running.sessions).create(
        CreateApiKeyInput(
            name="cjo demo approver",
            role="approver",
            business_lines=["demo"],
            created_by="demo",
        )
    )
    async with (
        httpx.AsyncClient(
            base_url=running.api_url, timeout=60, headers={"X-API-Key": running.admin_key}
        ) as api,
        httpx.AsyncClient(
            base_url=running.api_url, timeout=60, headers={"X-API-Key": checker.key}
        ) as approver,
    ):
        await drive(api, approver)


def main() -> None:
    configure_logging("WARNING", json=True)
    if validate_examples():
        sys.exit(1)
    asyncio.run(live())


if __name__ == "__main__":
    main()
