"""docs/recipes/add-a-channel.md, done for real: a channel is one line of the channel list.

Each test copies `src/cjo`, makes exactly the change the recipe asks for (one line; for a
new kind of provider also its module) and runs `channel_recipe_probe` in that copy. The
probe asks every part of CJO about the new channel: the settings (CJO_PROVIDERS), the
DSL and its JSON Schema, profiles and consents, the send step's rules, `cjo simulate`
(the real interpreter and send activity), the demo's stand-ins and the dispatcher, which
delivers a message to a real HTTP server here. No other file of the copy changes.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlmodel import select

from cjo.dsl._resources import DEFAULT_CONTACT_POLICY
from cjo.runtime.channels import CHANNEL_NAMES, PROVIDER_KINDS
from cjo.store.db import SessionFactory
from cjo.store.schema import Message
from tests.delivery.channel_recipe_probe import _versions
from tests.delivery.support import SECRET
from tests.receivers import Answer, HttpReceiver

ROOT = Path(__file__).resolve().parents[2]
CHANNEL_LIST = Path("cjo") / "runtime" / "channels.py"
OPENING = "CHANNELS: tuple[ChannelFacts, ...] = (\n"
# The two lines of the recipe's worked examples.
LINE = '    ChannelFacts("line", address="addresses", provider="http"),\n'
WHATSAPP = '    ChannelFacts("whatsapp", address="phone", provider="whatsapp_cloud"),\n'
WHATSAPP_MODULE = Path(__file__).with_name("recipe_whatsapp_cloud.py")
PROBE_SECONDS = 240
PROBE = "tests.delivery.channel_recipe_probe"
QUICK_CHECKS = "tests/runtime/test_channels.py"


def _copy_with(tmp_path: Path, line: str, modules: dict[str, Path] | None = None) -> Path:
    """`src/cjo` copied under tmp_path/src with `line` added to the channel list."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "cjo", src / "cjo", ignore=shutil.ignore_patterns("__pycache__"))
    listing = src / CHANNEL_LIST
    before = listing.read_text(encoding="utf-8")
    # After the list's last line, where an engineer would add it.
    end = before.index("\n)\n", before.index(OPENING)) + 1
    after = before[:end] + line + before[end:]
    listing.write_text(after, encoding="utf-8")
    changed = [
        change
        for change in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0)
        if change[:1] in "+-" and change[:3] not in ("+++", "---")
    ]
    assert changed == ["+" + line.rstrip("\n")]
    for relative, source in (modules or {}).items():
        target = src / "cjo" / relative
        assert not target.exists()
        shutil.copy(source, target)
    return src


def _probe(
    src: Path, channel: str, address: str, providers: dict[str, Any], database_url: str
) -> dict[str, Any]:
    """The probe's answer from the copy, after the copy's quick checks of every channel pass."""
    workdir = src.parent / "work"
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("CJO_")}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)]),
        "CJO_PROVIDERS": json.dumps({"*": providers}),
        "PROBE_DATABASE_URL": database_url,
    }
    probe = _run(env, "-m", PROBE, channel, address, str(workdir))
    found: dict[str, Any] = json.loads(probe.splitlines()[-1])
    assert found["cjo"] == str(src / "cjo" / "__init__.py"), "the probe ran another copy of CJO"
    # Its own --basetemp: pytest would otherwise prune older ones, this session's among them.
    checks = _run(
        env,
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        QUICK_CHECKS,
        f"--basetemp={src.parent / 'checks'}",
    )
    assert f"test_each_channel_is_known_everywhere[{channel}] PASSED" in checks
    return found


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_SECONDS,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def _known_everywhere(found: dict[str, Any], channel: str) -> None:
    """What every new channel gets from its line alone."""
    assert found["schema"]["template"] == found["schema"]["send"] == [*CHANNEL_NAMES, channel]
    assert found["schema"]["consent"] == [*CHANNEL_NAMES, channel]
    assert found["schema"]["frequency"] == [*CHANNEL_NAMES, channel, "any"]
    # No consent mode in its line: the default policy, and so every Plan, is unchanged.
    assert found["default_consent"] == DEFAULT_CONTACT_POLICY.consent
    assert found["versions"] == _versions()
    assert found["consent_accepted"] == [channel]
    assert found["profile_accepted"] == "u-1"
    # A channel the policy does not name needs consent for marketing.
    assert found["unreachable_without_consent"] == "no_consent"
    [step, end] = found["simulated"]
    assert (step["step"], step["outcome"], step["channel"]) == ("hello", "sent", channel)
    assert step["text"] == "Hello Li, welcome. Reply STOP to opt out"
    assert end["end"] == "completed"
    assert found["dispatched"]["claimed"] == found["dispatched"]["sent"] == 1


async def test_a_channel_an_existing_provider_delivers_is_one_line(
    tmp_path: Path, database_url: str, sessions: SessionFactory, receiver: HttpReceiver
) -> None:
    """LINE over the bank's signed HTTP gateway: the line, and the gateway in CJO_PROVIDERS."""
    src = _copy_with(tmp_path, LINE)
    gateway = {"kind": "http", "url": receiver.url, "secret": SECRET, "timeout_seconds": 5}

    found = _probe(src, "line", "U4af4980629", {"line": gateway}, database_url)

    assert found["facts"] == {
        "name": "line",
        "address": "addresses",
        "provider": "http",
        "consent": None,
        "opt_out": False,
    }
    assert found["provider_kind"] == found["stand_in_kind"] == "http"
    assert found["address"] == "U4af4980629"  # from the profile's `addresses`
    _known_everywhere(found, "line")
    [request] = receiver.requests
    body = request.json()
    assert request.signature_valid is True
    assert request.key == body["message_id"] == found["dispatched"]["message_id"]
    assert (body["channel"], body["to"]) == ("line", "U4af4980629")


async def test_a_channel_with_a_new_kind_of_provider_is_one_module_and_one_line(
    tmp_path: Path, database_url: str, sessions: SessionFactory
) -> None:
    """WhatsApp over Meta's Cloud API: the provider module, and the channel's line."""
    assert "whatsapp_cloud" not in PROVIDER_KINDS
    modules = {"delivery/providers/whatsapp_cloud.py": WHATSAPP_MODULE}
    src = _copy_with(tmp_path, WHATSAPP, modules)
    with HttpReceiver() as meta:
        meta.script(Answer(200, body=b'{"messages": [{"id": "wamid.HBgL"}]}'))
        cloud = {
            "kind": "whatsapp_cloud",
            "url": f"{meta.url}v21.0",
            "secret": "meta-access-token",
            "options": {"phone_number_id": "106540352242922"},
        }

        found = _probe(src, "whatsapp", "8613800138000", {"whatsapp": cloud}, database_url)

        [request] = meta.requests
    assert found["facts"]["provider"] == found["provider_kind"] == "whatsapp_cloud"
    assert found["address"] == "8613800138000"  # from the profile's `phone`
    # The demo has stand-ins for the kinds it knows; a new kind brings its own if it wants.
    assert found["stand_in_kind"] is None
    _known_everywhere(found, "whatsapp")
    assert request.path == "/v21.0/106540352242922/messages"
    assert request.headers["authorization"] == "Bearer meta-access-token"
    async with sessions() as session:
        message = (await session.exec(select(Message))).one()
    assert (message.status, message.provider_ref) == ("sent", "wamid.HBgL")
    body = request.json()
    assert (body["to"], body["text"]) == ("8613800138000", {"body": message.body})
    assert body["biz_opaque_callback_data"] == message.id
