"""Checks beyond the spec's minimum that users rely on: reserved ids, strict `with`,
root fields in expressions, what templates may read, and one clear message per mistake."""

from __future__ import annotations

from textwrap import dedent, indent

import pytest
from pydantic import BaseModel, ConfigDict

from cjo.dsl import ActivityDeclaration, InMemoryLookup, ValidationResult, validate
from cjo.runtime.channels import BY_NAME, CHANNEL_NAMES
from tests.dsl.test_diagnostics import codes, expect

HEADER = """\
apiVersion: cjo/v1
kind: Journey
metadata: {name: checks}
spec:
  form: user
  trigger: {event: signup}
"""


def journey(steps: str, extra: str = "", lookup: InMemoryLookup | None = None) -> ValidationResult:
    return validate(HEADER + indent(dedent(steps), "  ") + extra, "bundle.yaml", lookup)


def test_end_is_a_reserved_step_id() -> None:
    result = journey(
        """\
          steps:
            - {id: first, type: wait, duration: 1d, next: end}
            - {id: end, type: wait, duration: 1d}
        """
    )
    assert "E110" in codes(result)
    assert "E202" not in codes(result)
    assert "reserved" in expect(result, "E110", 9, 12, "spec.steps[1].id").message


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int


def test_call_with_literals_must_have_the_declared_type() -> None:
    lookup = InMemoryLookup.of(activities=[ActivityDeclaration("count.it", Params, ("ok",))])
    for literal in ('"3"', "true", "3.5"):
        result = journey(
            f"""\
              steps:
                - {{id: go, type: call, activity: count.it, with: {{count: {literal}}}}}
            """,
            lookup=lookup,
        )
        assert codes(result) == ["E110"], literal
    expression = journey(
        """\
          steps:
            - {id: go, type: call, activity: count.it, with: {count: "${ 1 + 2 }"}}
        """,
        lookup=lookup,
    )
    assert expression.valid


def test_expressions_may_only_read_fields_their_roots_have() -> None:
    result = journey(
        """\
          steps:
            - id: pick
              type: branch
              cases:
                - {when: "user.attrs.aum > 1 && user.lifecycel == 'new'", next: done}
                - {when: "trigger.tss > now || steps.pick.outcom == '0'", next: done}
              default: done
            - {id: done, type: end}
        """
    )
    assert codes(result) == ["E211", "E211", "E211"]
    lifecycle = expect(result, "E211", 11, 46, "spec.steps[0].cases[0].when")
    assert "user has no field 'lifecycel' (did you mean 'lifecycle'?)" in lifecycle.message
    expect(result, "E211", 12, 27, "spec.steps[0].cases[1].when")
    expect(result, "E211", 12, 51, "spec.steps[0].cases[1].when")


TEMPLATE = """\
---
apiVersion: cjo/v1
kind: Template
metadata: {name: note}
spec:
  channel: inbox
  content:
    en: {body: "%s"}
"""


def test_a_send_cannot_read_its_own_step_result() -> None:
    result = journey(
        """\
          steps:
            - {id: note, type: send, channel: inbox, template: note}
        """,
        TEMPLATE % "Your last step: {{ steps.note.outcome }}",
    )
    assert codes(result) == ["E230"]
    assert "'steps' has no attribute 'note'" in result.diagnostics[0].message


def test_benefit_is_only_there_when_the_journey_grants_one() -> None:
    result = journey(
        """\
          steps:
            - {id: note, type: send, channel: inbox, template: note}
        """,
        TEMPLATE % "You got {{ benefit.value }}",
    )
    assert codes(result) == ["E230"]
    assert "(this journey has no grant step)" in result.diagnostics[0].message


def test_one_mistake_gets_one_clear_message() -> None:
    result = journey(
        """\
          limits:
            frequency: [{channel: fax, max: 1, per: 1d}]
          steps: []
        """
    )
    assert codes(result) == ["E110", "E110"]
    channel = expect(result, "E110", 8, 27, "spec.limits.frequency[0].channel")
    assert channel.message.startswith("'fax' is not one of: sms, email")
    steps = expect(result, "E110", 9, 10, "spec.steps")
    assert steps.message == "needs at least 1 item"


@pytest.mark.parametrize("channel", CHANNEL_NAMES)
def test_the_opt_out_rule_follows_the_channel_list(channel: str) -> None:
    """E231 for a marketing template without opt-out text, exactly on the channels the
    channel list marks `opt_out`."""
    bundle = f"""\
apiVersion: cjo/v1
kind: Template
metadata: {{name: hello}}
spec:
  channel: {channel}
  content:
    zh-CN: {{subject: 你好, body: "你好"}}
"""
    codes = [d.code for d in validate(bundle).diagnostics]
    assert ("E231" in codes) is BY_NAME[channel].opt_out
