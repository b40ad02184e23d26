"""`cjo simulate`: the real interpreter, activities, PostgreSQL and time-skipping server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from cjo.cli.main import cli
from cjo.simulate import EXIT_INVALID, EXIT_USAGE, HORIZON, load_scenario, run, simulate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CARD_JOURNEY = EXAMPLES / "card_activation.yaml"
CARD_PROFILE = EXAMPLES / "simulate" / "card_activation.profile.json"
CARD_EVENTS = EXAMPLES / "simulate" / "card_activation.events.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CARD_ISSUED = """
- after: 0s
  event: card_issued
  props: {tier: gold, card_id: c-1001, card_last4: "4321", tier_name: 金卡}
"""


def _tomorrow_at_ten() -> datetime:
    """A start in the morning, so quiet hours never depend on when the tests run."""
    today = datetime.now(SHANGHAI).date()
    return datetime(today.year, today.month, today.day, 10, tzinfo=SHANGHAI) + timedelta(days=1)


def _simulate(*args: Any, **options: Any) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(*args, out=out, err=err, **options)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, lines, err.getvalue()


def _at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["t"])


def _close(moment: datetime, expected: datetime) -> bool:
    # The simulated clock also moves with real time (milliseconds per step).
    return abs(moment - expected) < timedelta(seconds=30)


def _invoke(events: Path, *options: str) -> Result:
    """`cjo simulate` on the card activation example, in this process."""
    command = ["simulate", str(CARD_JOURNEY), "--user", str(CARD_PROFILE), "--events", str(events)]
    return CliRunner().invoke(cli, [*command, *options])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_activation_on_day_one_converts_and_pays_the_cashback() -> None:
    start = _tomorrow_at_ten()
    code, lines, err = _simulate(CARD_JOURNEY, CARD_PROFILE, CARD_EVENTS, at=start.isoformat())
    assert code == 0, err
    steps = [(line["step"], line["type"], line["outcome"]) for line in lines[:-1]]
    assert steps == [
        ("risk_check", "risk", "pass"),
        ("welcome_sms", "send", "sent"),
        ("await_activation", "wait_for", "event"),
        ("cashback", "grant", "granted"),
        ("cashback_notice", "send", "sent"),
    ]
    welcome, cashback, notice = lines[1], lines[3], lines[4]
    assert welcome["channel"] == "sms"
    assert "李雷" in welcome["text"] and "尾号4321的金卡信用卡已寄出" in welcome["text"]
    benefit = cashback["benefit"]
    assert {k: benefit[k] for k in ("name", "type", "value", "unit", "quantity")} == {
        "name": "activation-cashback-20",
        "type": "cashback",
        "value": 20,
        "unit": "CNY",
        "quantity": 1,
    }
    assert benefit["code"] and _close(
        datetime.fromisoformat(benefit["expires_at"]), start + timedelta(days=31)
    )
    assert "尾号4321信用卡已激活" in notice["text"]
    assert _close(_at(lines[0]), start) and _close(_at(lines[2]), start + timedelta(days=1))
    end = lines[-1]
    assert set(end) == {"t", "end", "converted_at"} and end["end"] == "completed"
    assert _close(datetime.fromisoformat(end["converted_at"]), start + timedelta(days=1))
    assert lines[0]["t"].endswith("+08:00")  # the customer's own time zone
    assert "note:" not in err  # the profile gives its consents


def test_without_activation_the_run_nudges_times_out_and_flags(tmp_path: Path) -> None:
    events = CARD_ISSUED + "- {after: 2h, event: app_login}\n"
    start = _tomorrow_at_ten()
    code, lines, err = _simulate(
        CARD_JOURNEY, CARD_PROFILE, _write(tmp_path, "events.yaml", events), at=start.isoformat()
    )
    assert code == 0, err
    assert [(line.get("step"), line.get("outcome")) for line in lines] == [
        ("risk_check", "pass"),
        ("welcome_sms", "sent"),
        ("await_activation", "timeout"),
        ("nudge", "sent"),
        ("await_activation_again", "timeout"),
        ("not_activated", "done"),
        (None, None),
    ]
    nudge, flag, end = lines[3], lines[5], lines[-1]
    assert nudge["channel"] == "push" and "尾号4321的信用卡还在等您激活" in nudge["text"]
    assert nudge["subject"] == "您的新卡还未激活"
    assert flag["set"] == {"activation_status": "not_activated_after_nudge"}
    assert flag["tags_add"] == ["card-not-activated"]
    assert _close(_at(lines[2]), start + timedelta(days=3))
    assert _close(_at(lines[4]), start + timedelta(days=10))
    # The goal window (30 days from entry) keeps the run open after its last step.
    assert end == {"t": end["t"], "end": "completed"}
    assert _close(_at(end), start + timedelta(days=30))
    assert "event 'app_login' at after 2h: the journey does not listen for it" in err


def test_without_events_the_trigger_has_empty_props_and_the_run_shows_why_it_fails() -> None:
    code, lines, err = _simulate(CARD_JOURNEY, CARD_PROFILE, at=_tomorrow_at_ten().isoformat())
    assert code == 0, err
    assert "no 'card_issued' event at after: 0s" in err
    assert "a real run would not start; simulating anyway" in err  # the trigger's where
    assert [(line.get("step"), line.get("type"), line.get("outcome")) for line in lines] == [
        ("risk_check", "risk", "pass"),
        ("welcome_sms", "expression", "error"),
        ("welcome_sms", "send", None),
        (None, None, None),
    ]
    assert lines[1]["expression"] == "trigger.props.tier_name"
    assert lines[2]["left"] == "failed"  # the step was entered, and the run left from it
    assert lines[-1]["end"] == "failed"


async def test_the_entry_point_function_returns_the_timeline(tmp_path: Path) -> None:
    profile = json.loads(CARD_PROFILE.read_text(encoding="utf-8"))
    del profile["consents"]
    profile["timezone"] = "Europe/London"
    scenario = load_scenario(
        CARD_JOURNEY,
        _write(tmp_path, "profile.json", json.dumps(profile)),
        CARD_EVENTS,
        at=(_tomorrow_at_ten() + timedelta(days=1)).replace(tzinfo=None).isoformat(),
    )
    notes: list[str] = []
    simulation = await simulate(scenario, notes.append)
    assert "the profile gives no consents: every channel counts as consented" in notes
    # A time without an offset is the customer's: 10:00 in London.
    start = simulation.start.astimezone(ZoneInfo("Europe/London"))
    assert (start.hour, start.minute) == (10, 0)
    assert [event.name for event in simulation.events] == ["card_issued", "card_activated"]
    assert simulation.events[0].trigger and simulation.events[1].note is None
    assert [step.step for step in simulation.steps][-1] == "cashback_notice"
    assert simulation.end.reason == "completed" and simulation.end.converted_at is not None


def test_the_fund_example_falls_back_to_sms_and_the_payment_converts() -> None:
    start = _tomorrow_at_ten()
    code, lines, err = _simulate(
        EXAMPLES / "abandoned_fund_purchase.yaml",
        EXAMPLES / "simulate" / "abandoned_fund_purchase.profile.json",
        EXAMPLES / "simulate" / "abandoned_fund_purchase.events.yaml",
        at=start.replace(tzinfo=None).isoformat(),  # read in the customer's zone
        resources=[EXAMPLES / "wealth_funnel.yaml"],  # the wealth line's ContactPolicy
    )
    assert code == 0, err
    assert [(line.get("step"), line.get("outcome")) for line in lines] == [
        ("await_payment", "timeout"),
        ("remind", "sent"),
        ("await_payment_after_reminder", None),
        (None, None),
    ]
    remind = lines[1]
    assert (remind["channel"], remind["fallback"]) == ("sms", True)  # push is not consented
    assert "示例稳健增长混合A的5000元订单尚未支付" in remind["text"]
    assert lines[2]["left"] == "converted"  # the goal exits while the run waits
    assert lines[-1]["end"] == "converted" and _close(_at(lines[-1]), start + timedelta(hours=5))
    assert "event 'fund_order_started' at after 1h: another trigger" in err


def test_an_audience_journey_runs_even_for_a_user_outside_the_segment(tmp_path: Path) -> None:
    profile = {"id": "saver-2", "name": "王芳", "phone": "13700137000", "attrs": {"aum": 100}}
    code, lines, err = _simulate(
        EXAMPLES / "dormant_savers.yaml",
        _write(tmp_path, "profile.json", json.dumps(profile)),
        at=_tomorrow_at_ten().isoformat(),
    )
    assert code == 0, err
    assert "user saver-2 is not in segment 'dormant-savers'" in err
    assert "as if enrolled by the audience anyway" in err
    assert lines[0]["step"] == "message_test" and lines[0]["type"] == "split"
    assert lines[1]["type"] == "send" and lines[1]["outcome"] == "sent"
    assert lines[-1]["end"] == "completed"


def test_a_run_that_never_ends_is_stopped_at_the_horizon(tmp_path: Path) -> None:
    looping = """
apiVersion: cjo/v1
kind: Journey
metadata: {name: monthly-ping}
spec:
  form: user
  trigger: {event: ping}
  steps:
    - {id: pause, type: wait, duration: 30d}
    - id: again
      type: branch
      cases: [{when: "true", next: pause}]
      default: end
"""
    start = _tomorrow_at_ten()
    code, lines, err = _simulate(
        _write(tmp_path, "loop.yaml", looping),
        CARD_PROFILE,
        _write(tmp_path, "events.yaml", "- {after: 10d, event: ping}"),
        at=start.isoformat(),
    )
    assert code == 0, err
    assert "event 'ping' at after 10d: another trigger: a run of its own" in err
    assert f"still going {HORIZON.days} days after the last event; stopped it there" in err
    assert [line["step"] for line in lines[:4]] == ["pause", "again", "pause", "again"]
    # Every 30 days a wait and a branch; then the wait the stop cut short; then the end.
    assert len(lines) == 2 * ((HORIZON.days + 10) // 30) + 2
    assert (lines[-2]["step"], lines[-2]["outcome"], lines[-2]["left"]) == (
        "pause",
        None,
        "stopped",
    )
    assert lines[-1]["end"] == "stopped"
    assert _close(_at(lines[-1]), start + timedelta(days=10) + HORIZON)


def test_the_command_prints_only_json_lines_and_leaves_nothing_behind() -> None:
    before = set(Path(tempfile.gettempdir()).glob("cjo-simulate-*"))
    command = [str(Path(sys.executable).parent / "cjo"), "simulate", str(CARD_JOURNEY)]
    command += ["--user", str(CARD_PROFILE), "--events", str(CARD_EVENTS)]
    command += ["--at", _tomorrow_at_ten().isoformat()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("step") for line in lines] == [
        "risk_check",
        "welcome_sms",
        "await_activation",
        "cashback",
        "cashback_notice",
        None,
    ]
    assert done.stderr == ""  # no SDK warnings, no migration chatter
    assert set(Path(tempfile.gettempdir()).glob("cjo-simulate-*")) == before


def test_pretty_format_is_a_timeline_for_people() -> None:
    at = _tomorrow_at_ten().isoformat()
    result = _invoke(CARD_EVENTS, "--at", at, "--format", "pretty")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("card-activation (credit-card, plan ")
    assert lines[1].startswith("day 0 10:00  ▶ card_issued")
    assert lines[3].split()[:6] == ["day", "0", "10:00", "welcome_sms", "send", "→"]
    assert "sms: 【示例银行】李雷您好，您尾号4321" in lines[3]
    assert lines[4].startswith("day 1 10:00  • card_activated")
    assert "activation-cashback-20: 20 CNY, code " in lines[6]
    assert lines[-1].split()[3:] == ["■", "end", "completed", "converted", "day", "1", "10:00"]


# Usage errors: reported in one line before anything starts ----------------------------------


def test_a_start_in_the_past_is_a_usage_error() -> None:
    code, lines, err = _simulate(CARD_JOURNEY, CARD_PROFILE, CARD_EVENTS, at="2020-01-01T10:00")
    assert (code, lines) == (EXIT_USAGE, [])
    assert err.startswith("Error: --at: 2020-01-01T10:00 is in the past")


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("{not json", "profile.json: not JSON: "),
        ('{"name": "李雷"}', "profile.json: id: Field required"),
        ('{"id": "u1", "consents": {"fax": true}}', "consents: unknown channel 'fax'"),
        ('{"id": "u1", "timezone": "Mars/Base"}', "profile.json: timezone: "),
    ],
)
def test_a_bad_profile_is_a_usage_error(tmp_path: Path, profile: str, message: str) -> None:
    code, _, err = _simulate(CARD_JOURNEY, _write(tmp_path, "profile.json", profile))
    assert code == EXIT_USAGE
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("after: 1d", "expected a list of {after, event, props} entries"),
        ("- {after: 1x, event: card_activated}", "entry 1: after: '1x' is not a duration"),
        ("- {after: 1d, event: card_activated}\n- {after: 2d}", "entry 2: event: Field required"),
        ("- {after: 1d, event: 'bad name'}", "entry 1: event: String should match pattern"),
        ("- [unclosed", "events.yaml: not YAML (line "),
    ],
)
def test_a_bad_events_file_is_a_usage_error(tmp_path: Path, events: str, message: str) -> None:
    result = _invoke(_write(tmp_path, "events.yaml", events))
    assert result.exit_code == EXIT_USAGE
    assert message in result.stderr and result.stdout == ""


def test_an_invalid_journey_prints_diagnostics_and_exits_1(tmp_path: Path) -> None:
    broken = CARD_JOURNEY.read_text(encoding="utf-8").replace("timeout: nudge", "timeout: nuge")
    code, lines, err = _simulate(_write(tmp_path, "journey.yaml", broken), CARD_PROFILE)
    assert (code, lines) == (EXIT_INVALID, [])
    assert "journey.yaml:" in err and "nuge" in err


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = _simulate(CARD_JOURNEY, tmp_path / "nobody.json")
    assert code == EXIT_USAGE and "nobody.json: cannot read" in err
