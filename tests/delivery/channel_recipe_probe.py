"""Run in a copy of CJO with one channel added: what each part of CJO makes of it.

`test_adding_a_channel.py` copies `src/cjo`, adds a channel's line to the channel list
(and, for a new kind, its provider module) and runs this module there::

    python -m tests.delivery.channel_recipe_probe CHANNEL ADDRESS WORKDIR

with CJO_PROVIDERS configuring the channel and PROBE_DATABASE_URL a migrated database.
It prints one JSON object; the test judges it. Nothing here names a channel: all of it
comes from the channel list of the copy it runs in.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cjo
from cjo.activities.calls.catalog import default_registry
from cjo.activities.messaging._contact_rules import address_of, unreachable
from cjo.activities.people.profiles import ConsentChange, ProfileInput
from cjo.delivery.dispatcher import Dispatcher
from cjo.demo.standins import Delivered, SandboxProviders
from cjo.dsl import InMemoryLookup, compile_bundle, json_schema
from cjo.dsl._resources import DEFAULT_CONTACT_POLICY
from cjo.runtime.channels import BY_NAME
from cjo.runtime.log import configure_logging
from cjo.runtime.settings import Settings
from cjo.simulate import run as simulate
from cjo.store.db import make_engine, make_sessions
from cjo.store.schema import Profile
from tests.delivery.support import put_messages

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")
JOURNEY = """
apiVersion: cjo/v1
kind: Journey
metadata: {{name: hello-on-{channel}, businessLine: retail}}
spec:
  form: channel
  trigger: {{event: app_installed}}
  steps:
    - id: hello
      type: send
      channel: {channel}
      template: hello-{channel}
      next: end
---
apiVersion: cjo/v1
kind: Template
metadata: {{name: hello-{channel}, businessLine: retail}}
spec:
  channel: {channel}
  content:
    en: {{body: "Hello {{{{ user.name }}}}, welcome. Reply STOP to opt out"}}
"""


def _profile(channel: str, address: str) -> dict[str, Any]:
    """A customer `channel` can reach at `address`, however the channel is addressed."""
    profile: dict[str, Any] = {"id": "u-1", "name": "Li", "locale": "en"}
    addressed_by = BY_NAME[channel].address
    if addressed_by == "addresses":
        profile["addresses"] = {channel: address}
    elif addressed_by in ("phone", "email"):
        profile[addressed_by] = address
    return profile


def _schema_enums() -> dict[str, list[str]]:
    defs = json_schema()["$defs"]
    return {
        "template": defs["TemplateSpec"]["properties"]["channel"]["enum"],
        "send": defs["SendStep"]["properties"]["channel"]["enum"],
        "frequency": defs["FrequencyRule"]["properties"]["channel"]["enum"],
        "consent": defs["ContactPolicySpec"]["properties"]["consent"]["propertyNames"]["enum"],
    }


def _simulated(channel: str, address: str, workdir: Path) -> list[dict[str, Any]]:
    """`cjo simulate` of a journey that greets the customer on `channel`."""
    (workdir / "journey.yaml").write_text(JOURNEY.format(channel=channel), encoding="utf-8")
    user = {**_profile(channel, address), "consents": {channel: True}}
    (workdir / "user.json").write_text(json.dumps(user), encoding="utf-8")
    (workdir / "events.yaml").write_text("- {after: 0s, event: app_installed}\n")
    day = datetime.now(SHANGHAI).date() + timedelta(days=1)
    at = datetime(day.year, day.month, day.day, 10, tzinfo=SHANGHAI)  # outside quiet hours
    out, err = io.StringIO(), io.StringIO()
    code = simulate(
        workdir / "journey.yaml",
        workdir / "user.json",
        workdir / "events.yaml",
        at=at.isoformat(),
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _versions() -> dict[str, str]:
    """The Plan version of every example journey."""
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    versions = {}
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        plans = compile_bundle(path.read_text(encoding="utf-8"), path.name, lookup).plans
        versions |= {name: plan.version for name, plan in plans.items()}
    return versions


async def _dispatched(channel: str, address: str, settings: Settings) -> dict[str, Any]:
    """One pending message on `channel` through the dispatcher, to the configured provider."""
    engine = make_engine(os.environ["PROBE_DATABASE_URL"])
    try:
        sessions = make_sessions(engine)
        [message_id] = await put_messages(sessions, 1, channel=channel, address=address)
        dispatcher = Dispatcher(sessions, settings)
        try:
            summary = await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
    finally:
        await engine.dispose()
    return {"message_id": message_id, **asdict(summary)}


def main(channel: str, address: str, workdir: Path) -> dict[str, Any]:
    configure_logging("WARNING", json=False)  # on stderr: stdout is for the answer
    settings = Settings()  # CJO_PROVIDERS from the environment, as in production
    provider = settings.provider("retail", channel)
    profile = Profile(**_profile(channel, address))
    stand_in = SandboxProviders(1, 2, "secret", Delivered()).providers()["*"].get(channel)
    return {
        "cjo": cjo.__file__,
        "facts": asdict(BY_NAME[channel]),
        "provider_kind": provider.kind if provider is not None else None,
        "schema": _schema_enums(),
        "default_consent": dict(DEFAULT_CONTACT_POLICY.consent),
        "profile_accepted": ProfileInput.model_validate(_profile(channel, address)).id,
        "consent_accepted": list(
            ConsentChange(
                user_id="u-1", consents={channel: True}, source="probe", at=datetime.now(SHANGHAI)
            ).consents
        ),
        "address": address_of(channel, profile),
        "unreachable_without_consent": unreachable(
            channel, profile, {}, marketing=True, consent_modes=DEFAULT_CONTACT_POLICY.consent
        ),
        "stand_in_kind": stand_in.kind if stand_in is not None else None,
        "simulated": _simulated(channel, address, workdir),
        "versions": _versions(),
        "dispatched": asyncio.run(_dispatched(channel, address, settings)),
    }


if __name__ == "__main__":
    name, to, directory = sys.argv[1:4]
    print(json.dumps(main(name, to, Path(directory)), ensure_ascii=False))  # noqa: T201
