"""The Plan: content-hash versions that ignore formatting and follow meaning."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest

from cjo.dsl import (
    CompileError,
    DslError,
    DslSyntaxError,
    DslValidationError,
    InMemoryLookup,
    Plan,
    TemplateRenderError,
    compile_bundle,
    mermaid,
    validate,
)
from cjo.dsl.plan import ExpressionValue, LiteralValue, SendPlanStep, WaitForPlanStep

BUNDLE = dedent(
    """\
    apiVersion: cjo/v1
    kind: Journey
    metadata: {name: card-activation, businessLine: credit-card}
    spec:
      form: product
      trigger:
        event: card_issued
        where: "event.props.tier != 'basic'"
      goal: {event: card_activated, within: 30d}
      steps:
        - id: welcome
          type: send
          channel: sms
          template: card-welcome
          vars: {tier: "${ trigger.props.tier }", bank: Example Bank}
        - id: wait_activation
          type: wait_for
          event: card_activated
          timeout: 3d
          on: {timeout: end}
        - id: reward
          type: grant
          benefit: cashback-20
    ---
    apiVersion: cjo/v1
    kind: Template
    metadata: {name: card-welcome, businessLine: credit-card}
    spec:
      channel: sms
      content:
        zh-CN: {body: "【示例银行】{{ user.name }}您好，您的{{ vars.tier }}卡已寄出。拒收请回复R"}
        en: {body: "Hi {{ user.name }}, your {{ vars.tier }} card is on its way. Reply STOP to opt out"}
    ---
    apiVersion: cjo/v1
    kind: Benefit
    metadata: {name: cashback-20, businessLine: credit-card}
    spec: {type: cashback, value: 20, unit: CNY, stock: 100, validity: 30d}
    """
)

# The same meaning, written differently: block style, other key order, comments,
# other quoting, and equivalent durations.
REFORMATTED = dedent(
    """\
    # Same journey, reformatted.
    kind: Benefit
    apiVersion: "cjo/v1"
    metadata:
      businessLine: credit-card
      name: cashback-20
    spec:
      validity: P30D        # ISO form of 30d
      unit: CNY
      value: 20
      stock: 100
      type: cashback
    ---
    kind: Template
    apiVersion: cjo/v1
    metadata: {businessLine: credit-card, name: card-welcome}
    spec:
      content:
        en:
          body: 'Hi {{ user.name }}, your {{ vars.tier }} card is on its way. Reply STOP to opt out'
        zh-CN:
          body: "【示例银行】{{ user.name }}您好，您的{{ vars.tier }}卡已寄出。拒收请回复R"
      channel: sms
    ---
    kind: Journey
    apiVersion: cjo/v1
    metadata:
      businessLine: credit-card
      name: card-activation
    spec:
      steps:
        - type: send
          id: welcome
          template: card-welcome
          channel: sms
          vars:
            bank: "Example Bank"
            tier: "${trigger.props.tier}"
        - {id: wait_activation, type: wait_for, event: card_activated, timeout: 72h,
           on: {timeout: end}}
        - {id: reward, type: grant, benefit: cashback-20, quantity: 1}
      goal:
        within: 720h
        event: card_activated
        exit: true
      trigger: {where: "event.props.tier != 'basic'", event: card_issued}
      form: product
    """
)


def plan_of(text: str, journey: str = "card-activation") -> Plan:
    return compile_bundle(text, "bundle.yaml").plans[journey]


def test_bundle_compiles_to_a_self_contained_plan() -> None:
    plan = plan_of(BUNDLE)
    assert plan.start == "welcome"
    assert plan.steps["welcome"].routes == {
        "sent": "wait_activation",
        "suppressed": "wait_activation",
    }
    assert plan.steps["wait_activation"].routes == {"event": "reward", "timeout": "end"}
    waiting = plan.steps["wait_activation"]
    assert isinstance(waiting, WaitForPlanStep) and waiting.params.timeout_seconds == 3 * 86400
    welcome = plan.steps["welcome"]
    assert isinstance(welcome, SendPlanStep)
    assert welcome.params.vars == {
        "tier": ExpressionValue(expr="trigger.props.tier"),
        "bank": LiteralValue(value="Example Bank"),
    }
    # Referenced resources travel inside the plan, typed and pinned by version.
    assert set(plan.model_dump()["resources"]) == {"Template", "Benefit"}
    assert plan.resources.benefits["cashback-20"].spec.value == 20
    assert len(plan.resources.templates["card-welcome"].version) == 16
    assert plan.goal is not None and plan.goal.within_seconds == 30 * 86400
    assert plan.contact_policy.opt_out_pattern  # the business line's rules, defaults here


def test_plan_round_trips_through_json() -> None:
    plan = plan_of(BUNDLE)
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan


def test_reformatting_keeps_the_version() -> None:
    assert plan_of(BUNDLE).version == plan_of(REFORMATTED).version


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("timeout: 3d", "timeout: 4d"),
        ("within: 30d}", "within: 31d}"),
        ("value: 20,", "value: 25,"),  # a pinned resource changed
        ("您的{{ vars.tier }}卡已寄出", "您的{{ vars.tier }}信用卡已寄出"),
        ("on: {timeout: end}", "on: {timeout: reward}"),
        ("tier != 'basic'", "tier != 'gold'"),
        ("bank: Example Bank", "bank: Sample Bank"),
        ("form: product", "form: activity"),
    ],
)
def test_any_change_of_meaning_changes_the_version(old: str, new: str) -> None:
    assert old in BUNDLE
    changed = BUNDLE.replace(old, new, 1)
    assert plan_of(changed).version != plan_of(BUNDLE).version


def test_published_resources_are_pinned_with_their_version() -> None:
    resources = BUNDLE.split("---\n", 1)[1]
    published = validate(resources, "resources.yaml")
    lookup = InMemoryLookup.of(published.documents)
    journey_only = BUNDLE.split("---\n", 1)[0]
    plan = compile_bundle(journey_only, "journey.yaml", lookup).plans["card-activation"]
    expected = lookup.resource("Benefit", "credit-card", "cashback-20")
    assert expected is not None
    assert plan.resources.benefits["cashback-20"].version == expected.version
    # Pinned by content: the same resource gives the same plan, wherever it was found.
    assert plan.version == plan_of(BUNDLE).version


def test_compile_refuses_an_invalid_bundle() -> None:
    with pytest.raises(DslValidationError) as caught:
        compile_bundle(BUNDLE.replace("benefit: cashback-20", "benefit: cashback-99"))
    assert [d.code for d in caught.value.diagnostics if d.is_error] == ["E220"]
    with pytest.raises(DslSyntaxError) as unreadable:
        compile_bundle("a: &anchor 1\nb: *anchor\n")
    assert [d.code for d in unreadable.value.diagnostics] == ["E101"]


def test_every_dsl_error_has_one_root() -> None:
    """The tree drawn in cjo.dsl's docstring: siblings under DslError, none inside another."""
    kinds = (DslSyntaxError, DslValidationError, CompileError, TemplateRenderError)
    for kind in kinds:
        assert issubclass(kind, DslError)
        assert not any(issubclass(kind, other) for other in kinds if other is not kind)


def test_mermaid_labels_every_outcome() -> None:
    chart = mermaid(plan_of(BUNDLE))
    assert chart.startswith("flowchart TD\n")
    assert 's_welcome -->|"sent / suppressed"| s_wait_activation' in chart
    assert 's_wait_activation -->|"timeout"| done' in chart
    assert 's_reward -->|"granted / exhausted / limited"| done' in chart


def test_plan_json_is_canonical_and_ascii_safe() -> None:
    plan = plan_of(BUNDLE)
    text = plan.model_dump_json()
    assert (
        "【示例银行】"
        in json.loads(text)["resources"]["Template"]["card-welcome"]["spec"]["content"]["zh-CN"][
            "body"
        ]
    )
