"""Every diagnostic code of the spec's table, on crafted bad documents, at its exact place.

Line and column are 1-based and point at the offending key (unknown field) or value (bad
value); a missing field points at the start of the mapping that lacks it.
"""

from __future__ import annotations

from textwrap import dedent

from pydantic import BaseModel, ConfigDict

from cjo.dsl import (
    CODES,
    ActivityDeclaration,
    Diagnostic,
    InMemoryLookup,
    ResourceLookup,
    Severity,
    ValidationResult,
    validate,
)

FILE = "bundle.yaml"

SPEC_CODES = {
    "E100",
    "E101",
    "E110",
    "E111",
    "E200",
    "E201",
    "E202",
    "W203",
    "E210",
    "E211",
    "E220",
    "E221",
    "E230",
    "E231",
    "E232",
    "E240",
}


def check(text: str, lookup: ResourceLookup | None = None) -> ValidationResult:
    return validate(dedent(text), FILE, lookup)


def _listing(result: ValidationResult) -> str:
    return "\n".join(f"  {d.format_text()}  [{d.path}]" for d in result.diagnostics) or "  (none)"


def expect(
    result: ValidationResult, code: str, line: int, column: int, path: str | None = None
) -> Diagnostic:
    """The one diagnostic with `code` at `line`:`column`, whose path (if given) is `path`."""
    found = [d for d in result.diagnostics if (d.code, d.line, d.column) == (code, line, column)]
    assert len(found) == 1, f"expected one {code} at {line}:{column}; got:\n{_listing(result)}"
    diagnostic = found[0]
    assert diagnostic.file == FILE
    if path is not None:
        assert diagnostic.path == path, _listing(result)
    return diagnostic


def codes(result: ValidationResult) -> list[str]:
    return sorted(d.code for d in result.diagnostics)


def test_the_table_of_codes_is_the_spec_s() -> None:
    assert set(CODES) == SPEC_CODES


# --- E100, E101: the file itself ------------------------------------------------------------


def test_e100_invalid_yaml() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata:
          name: broken
            title: too deep
        """
    )
    assert codes(result) == ["E100"]
    assert "not valid YAML" in expect(result, "E100", 5, 10, "").message
    assert not result.valid


def test_e100_a_document_that_is_not_a_mapping() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-one}
        spec: {match: {tag: vip}}
        ---
        - apiVersion: cjo/v1
        - kind: Segment
        """
    )
    assert codes(result) == ["E100"]
    assert expect(result, "E100", 6, 1).message == "a document must be a mapping"


def test_e101_a_custom_tag() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: !Ref card_issued}
          steps: [{id: a, type: wait, duration: 1d}]
        """
    )
    assert codes(result) == ["E101"]
    assert "'!Ref'" in expect(result, "E101", 6, 20).message


# --- E110: schema ---------------------------------------------------------------------------


def test_e110_unknown_field_points_at_the_key_and_suggests_the_right_one() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger:
            event: card_issued
          steps:
            - id: welcome
              type: wait
              duraton: 1d
        """
    )
    assert codes(result) == ["E110"]
    diagnostic = expect(result, "E110", 11, 7, "spec.steps[0].duraton")
    assert diagnostic.message == "unknown field 'duraton' (did you mean 'duration'?)"
    assert diagnostic.severity is Severity.ERROR


def test_e110_unknown_field_in_a_flow_mapping_and_in_a_segment_condition() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: dormant-savers, lables: {owner: ops}}
        spec:
          match:
            all:
              - {attr: aum, gtee: 50000}
        """
    )
    assert codes(result) == ["E110", "E110"]
    labels = expect(result, "E110", 3, 34, "metadata.lables")
    assert labels.message == "unknown field 'lables' (did you mean 'labels'?)"
    gte = expect(result, "E110", 7, 21, "spec.match.all[0].gtee")
    assert gte.message == "unknown field 'gtee' (did you mean 'gte'?)"


def test_e110_wrong_type_points_at_the_value() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: gift
              type: grant
              benefit: cashback-20
              quantity: "two"
        """
    )
    assert codes(result) == ["E110"]
    diagnostic = expect(result, "E110", 11, 17, "spec.steps[0].quantity")
    assert diagnostic.message == "must be a whole number, not 'two'"


def test_e110_a_list_given_a_mapping() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps: {welcome: {type: wait}}
        """
    )
    assert codes(result) == ["E110"]
    assert expect(result, "E110", 7, 10, "spec.steps").message == "must be a list"


def test_e110_missing_required_field_points_at_the_mapping_that_lacks_it() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {title: no name here}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: wait_activation
              type: wait_for
              event: card_activated
        """
    )
    assert codes(result) == ["E110", "E110"]
    name = expect(result, "E110", 3, 11, "metadata.name")
    assert name.message == "missing required field 'name'"
    timeout = expect(result, "E110", 8, 7, "spec.steps[0].timeout")
    assert timeout.message == "missing required field 'timeout'"


def test_e110_value_out_of_range() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          holdout: 80
          limits:
            sendRate: 0
          steps:
            - id: pick
              type: split
              variants:
                - {name: a, weight: 0, next: end}
                - {name: b, weight: 1, next: end}
        """
    )
    assert codes(result) == ["E110", "E110", "E110"]
    holdout = expect(result, "E110", 7, 12, "spec.holdout")
    assert holdout.message == "must be less than or equal to 50"
    expect(result, "E110", 9, 15, "spec.limits.sendRate")
    expect(result, "E110", 14, 29, "spec.steps[0].variants[0].weight")


def test_e110_bad_values_of_the_common_types() -> None:
    result = check(
        """\
        apiVersion: cjo/v2
        kind: Journey
        metadata: {name: Card_Activation}
        spec:
          form: product
          trigger: {event: card_issued}
          limits:
            quietHours: {start: "25:00", end: "08:00"}
          steps:
            - {id: pause, type: wait, duration: 0d}
            - {id: ping, type: send, channel: smss, template: card-welcome}
        """
    )
    assert codes(result) == ["E110"] * 5
    version = expect(result, "E110", 1, 13, "apiVersion")
    assert version.message == "'cjo/v2' is not one of: cjo/v1 (did you mean 'cjo/v1'?)"
    assert "is not a valid name" in expect(result, "E110", 3, 18, "metadata.name").message
    assert "time of day" in expect(result, "E110", 8, 25, "spec.limits.quietHours.start").message
    duration = expect(result, "E110", 10, 41, "spec.steps[0].duration")
    assert duration.message == "duration '0d' must be greater than zero"
    channel = expect(result, "E110", 11, 39, "spec.steps[1].channel")
    assert "did you mean 'sms'?" in channel.message


def test_e110_unknown_step_type_suggests_the_right_one() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: pause
              type: wiat
              duration: 1d
        """
    )
    assert codes(result) == ["E110"]
    diagnostic = expect(result, "E110", 9, 13, "spec.steps[0].type")
    assert diagnostic.message.startswith("unknown step type 'wiat' (did you mean 'wait'?); one of")


def test_e110_unknown_kind_suggests_the_right_one() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segmnet
        metadata: {name: seg-one}
        spec: {}
        """
    )
    assert codes(result) == ["E110"]
    assert "(did you mean 'Segment'?)" in expect(result, "E110", 2, 7, "kind").message


def test_e110_an_outcome_the_step_does_not_have_points_at_the_key() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: wait_activation
              type: wait_for
              event: card_activated
              timeout: 3d
              on: {timout: end}
        """
    )
    assert codes(result) == ["E110"]
    diagnostic = expect(result, "E110", 12, 12, "spec.steps[0].on.timout")
    assert "(did you mean 'timeout'?)" in diagnostic.message


# --- E111: duplicate documents --------------------------------------------------------------


def test_e111_same_kind_business_line_and_name() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: card-welcome, businessLine: credit-card}
        spec:
          channel: email
          content: {en: {subject: Hi, body: Hello}}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata:
          name: card-welcome
          businessLine: credit-card
        spec:
          channel: email
          content: {en: {subject: Hi, body: Hello again}}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: card-welcome, businessLine: retail}
        spec:
          channel: email
          content: {en: {subject: Hi, body: Hello}}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: card-welcome, businessLine: credit-card}
        spec: {match: {tag: vip}}
        """
    )
    # Another business line, or another kind, is another resource.
    assert codes(result) == ["E111"]
    diagnostic = expect(result, "E111", 11, 9, "metadata.name")
    assert diagnostic.message == (
        "Template 'card-welcome' of business line 'credit-card' is already defined on line 3"
    )


def test_e111_the_default_business_line_counts_when_left_out() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: vip}
        spec: {match: {tag: vip}}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: vip, businessLine: default}
        spec: {match: {tag: gold}}
        """
    )
    assert codes(result) == ["E111"]
    expect(result, "E111", 8, 18, "metadata.name")


# --- E200, E201, E202, W203: the step graph -------------------------------------------------


def test_e200_duplicate_step_id() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: pause
              type: wait
              duration: 1d
            - id: pause
              type: wait
              duration: 2d
        """
    )
    assert codes(result) == ["E200"]
    diagnostic = expect(result, "E200", 11, 11, "spec.steps[1].id")
    assert diagnostic.message == "duplicate step id 'pause' (first used by spec.steps[0])"


def test_e201_the_spec_s_example_a_misspelt_on_pass_target() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: RiskPolicy
        metadata: {name: new-card-abuse, businessLine: credit-card}
        spec:
          rules:
            - {id: blocklisted, if: {list: blocklist, key: user.phone}, then: reject}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation, businessLine: credit-card}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: check
              type: risk
              policy: new-card-abuse
              on: {pass: welcom, review: welcome}
            - id: welcome
              type: wait
              duration: 1d
        """
    )
    assert codes(result) == ["E201"]
    diagnostic = expect(result, "E201", 18, 18, "spec.steps[0].on.pass")
    assert diagnostic.message == (
        "unknown step 'welcom' in spec.steps[0].on.pass (did you mean 'welcome'?)"
    )
    assert diagnostic.format_text() == (
        "bundle.yaml:18:18: error E201: "
        "unknown step 'welcom' in spec.steps[0].on.pass (did you mean 'welcome'?)"
    )


def test_e201_in_next_in_branch_cases_and_default_and_in_expressions() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: route
              type: branch
              cases:
                - {when: "user.lifecycle == 'new'", next: nowhere}
                - when: "steps.wait_activaton.outcome == 'event'"
                  next: end
              default: wait_activaton
            - id: wait_activation
              type: wait_for
              event: card_activated
              timeout: 3d
              next: ned
        """
    )
    assert codes(result) == ["E201"] * 4 + ["W203"]
    nowhere = expect(result, "E201", 11, 51, "spec.steps[0].cases[0].next")
    assert nowhere.message == "unknown step 'nowhere' in spec.steps[0].cases[0].next"
    in_expression = expect(result, "E201", 12, 24, "spec.steps[0].cases[1].when")
    assert "'wait_activaton'" in in_expression.message
    assert "(did you mean 'wait_activation'?)" in in_expression.message
    default = expect(result, "E201", 14, 16, "spec.steps[0].default")
    assert default.message.endswith("(did you mean 'wait_activation'?)")
    next_ = expect(result, "E201", 19, 13, "spec.steps[1].next")
    assert next_.message == "unknown step 'ned' in spec.steps[1].next (did you mean 'end'?)"


def test_e202_a_loop_of_two_sends_with_no_wait() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: nudge}
        spec:
          channel: email
          content:
            en: {subject: Reminder, body: "Hi {{ user.name }}"}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: nag}
        spec:
          form: channel
          trigger: {event: signup}
          steps:
            - id: first
              type: send
              channel: email
              template: nudge
            - id: second
              type: send
              channel: email
              template: nudge
              next: first
        """
    )
    assert codes(result) == ["E202"]
    diagnostic = expect(result, "E202", 16, 11, "spec.steps[0].id")
    assert "first → second → first" in diagnostic.message


def test_e202_a_step_that_loops_onto_itself() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: spin}
        spec:
          form: user
          trigger: {event: signup}
          steps:
            - id: bump
              type: update
              set: {counter: "${ user.attrs.counter + 1 }"}
              next: bump
        """
    )
    assert codes(result) == ["E202"]
    expect(result, "E202", 8, 11, "spec.steps[0].id")


def test_a_loop_through_a_wait_or_a_wait_for_is_fine() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: nudge}
        spec:
          channel: email
          content:
            en: {subject: Reminder, body: "Hi {{ user.name }}"}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: nag}
        spec:
          form: channel
          trigger: {event: signup}
          steps:
            - id: first
              type: send
              channel: email
              template: nudge
            - id: second
              type: send
              channel: email
              template: nudge
            - id: pause
              type: wait
              duration: 1d
            - id: third
              type: send
              channel: email
              template: nudge
            - id: listen
              type: wait_for
              event: opened
              timeout: 2d
              on: {timeout: first, event: end}
        """
    )
    assert result.diagnostics == []
    assert result.valid


def test_w203_unreachable_step_is_a_warning_and_the_file_stays_valid() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: pause
              type: wait
              duration: 1d
              next: end
            - id: orphan
              type: wait
              duration: 1d
        """
    )
    assert codes(result) == ["W203"]
    diagnostic = expect(result, "W203", 12, 11, "spec.steps[1].id")
    assert diagnostic.severity is Severity.WARNING
    assert not diagnostic.is_error
    assert diagnostic.message == "step 'orphan' is never reached"
    assert diagnostic.format_text().startswith("bundle.yaml:12:11: warning W203: ")
    assert result.valid


# --- E210, E211: expressions ----------------------------------------------------------------


def test_e210_syntax_error_lands_inside_the_expression_string() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger:
            event: card_issued
            where: "event.props.tier != "
          steps:
            - id: route
              type: branch
              cases:
                - when: user.name === 'li'
                  next: end
              default: end
        """
    )
    assert codes(result) == ["E210", "E210"]
    # The expression starts at column 13, after the quote; CEL stops at its end, offset 20.
    where = expect(result, "E210", 8, 33, "spec.trigger.where")
    assert where.message.startswith("does not compile: 1:21: ")
    # A plain scalar has no quote: `===` trips at its third '=', offset 12.
    when = expect(result, "E210", 13, 29, "spec.steps[0].cases[0].when")
    assert when.message.startswith("does not compile: 1:13: ")


def test_e210_in_a_dollar_expression_counts_from_inside_the_braces() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          steps:
            - id: note
              type: update
              set:
                score: "${ user.attrs.score + }"
        """
    )
    assert codes(result) == ["E210"]
    # "${ " puts the expression at column 20; CEL stops at its end, offset 18.
    diagnostic = expect(result, "E210", 11, 38, "spec.steps[0].set.score")
    assert diagnostic.message.startswith("does not compile: 1:19: ")


def test_e211_unknown_root_variable_and_unknown_function() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          entry: {key: "evnt.props.order_id"}
          steps:
            - id: route
              type: branch
              cases:
                - {when: "usr.name == 'li'", next: end}
                - when: "size(user.tags) > 0 && frobnicate(user.name)"
                  next: end
              default: end
            - id: note
              type: update
              set:
                score: "${ usr.attrs.score + 1 }"
        """
    )
    assert codes(result) == ["E211"] * 4 + ["W203"]
    key = expect(result, "E211", 7, 17, "spec.entry.key")
    assert key.message == "unknown variable 'evnt' (did you mean 'event'?)"
    usr = expect(result, "E211", 12, 19, "spec.steps[0].cases[0].when")
    assert usr.message == "unknown variable 'usr' (did you mean 'user'?)"
    function = expect(result, "E211", 13, 41, "spec.steps[0].cases[1].when")
    assert function.message.startswith("unknown function 'frobnicate'")
    expect(result, "E211", 19, 20, "spec.steps[1].set.score")


def test_an_escaped_string_reports_at_the_value_not_at_a_shifted_column() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger:
            event: card_issued
            where: "event.props.tier == \\"gold\\" && usr.ok"
          exit:
            - {event: card_cancelled, where: 'event.props.by == ''bank'' && usr.ok'}
          steps: [{id: pause, type: wait, duration: 1d}]
        """
    )
    # `\\"` and `''` are two characters in the line but one in the text: an offset into
    # the text would land two columns short of `usr`, so the value itself is pointed at.
    assert codes(result) == ["E211", "E211"]
    expect(result, "E211", 8, 12, "spec.trigger.where")
    expect(result, "E211", 10, 38, "spec.exit[0].where")


# --- E220, E221: references to other resources ----------------------------------------------


def test_e220_unknown_segment_benefit_template_risk_policy_and_activity() -> None:
    lookup = InMemoryLookup.of(activities=[ActivityDeclaration("crm.notify", _NotifyParams)])
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: card-welcome, businessLine: credit-card}
        spec:
          channel: sms
          content:
            zh-CN: {body: "您好，拒收请回复R"}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation, businessLine: credit-card}
        spec:
          form: product
          trigger:
            segment: dormant-savers
          steps:
            - id: welcome
              type: send
              channel: sms
              template: card-welcom
            - id: check
              type: risk
              policy: new-card-abuse
            - id: gift
              type: grant
              benefit: cashback-20
            - id: route
              type: branch
              cases:
                - {segment: vip, next: hook}
              default: hook
            - id: hook
              type: call
              activity: crm.notfy
        """,
        lookup,
    )
    assert codes(result) == ["E220"] * 6
    segment = expect(result, "E220", 15, 14, "spec.trigger.segment")
    assert segment.message == "unknown Segment 'dormant-savers' in business line 'credit-card'"
    template = expect(result, "E220", 20, 17, "spec.steps[0].template")
    assert template.message == (
        "unknown Template 'card-welcom' in business line 'credit-card' "
        "(did you mean 'card-welcome'?)"
    )
    policy = expect(result, "E220", 23, 15, "spec.steps[1].policy")
    assert policy.message == "unknown RiskPolicy 'new-card-abuse' in business line 'credit-card'"
    benefit = expect(result, "E220", 26, 16, "spec.steps[2].benefit")
    assert benefit.message == "unknown Benefit 'cashback-20' in business line 'credit-card'"
    case = expect(result, "E220", 30, 21, "spec.steps[3].cases[0].segment")
    assert case.message == "unknown Segment 'vip' in business line 'credit-card'"
    activity = expect(result, "E220", 34, 17, "spec.steps[4].activity")
    assert activity.message == "unknown activity 'crm.notfy' (did you mean 'crm.notify'?)"


class _NotifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    list_id: str


def test_e220_a_segment_referenced_from_a_segment_and_a_risk_rule() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-one}
        spec:
          match:
            not: {segment: young-profesionals}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: young-professionals}
        spec: {match: {tag: young}}
        ---
        apiVersion: cjo/v1
        kind: RiskPolicy
        metadata: {name: risky}
        spec:
          rules:
            - {id: in-bad-crowd, if: {segment: bad-crowd}, then: review}
        """
    )
    assert codes(result) == ["E220", "E220"]
    hinted = expect(result, "E220", 6, 20, "spec.match.not.segment")
    assert hinted.message == (
        "unknown Segment 'young-profesionals' (did you mean 'young-professionals'?)"
    )
    expect(result, "E220", 18, 40, "spec.rules[0].if.segment")


def test_e221_two_segments_that_reference_each_other() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-a}
        spec:
          match:
            any:
              - {tag: vip}
              - {segment: seg-b}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-b}
        spec:
          match: {segment: seg-a}
        """
    )
    assert codes(result) == ["E221", "E221"]
    first = expect(result, "E221", 8, 19, "spec.match.any[1].segment")
    assert first.message == "segment references form a cycle: seg-a → seg-b → seg-a"
    second = expect(result, "E221", 14, 20, "spec.match.segment")
    assert second.message == "segment references form a cycle: seg-b → seg-a → seg-b"


def test_e221_a_segment_that_references_itself() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: seg-a}
        spec:
          match:
            all: [{tag: vip}, {segment: seg-a}]
        """
    )
    assert codes(result) == ["E221"]
    expect(result, "E221", 6, 33, "spec.match.all[1].segment")


# --- E230, E231, E232: templates ------------------------------------------------------------


def test_e230_undefined_vars_and_a_jinja_syntax_error() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: offer}
        spec:
          channel: email
          content:
            en: {subject: Offer, body: "Hi {{ user.name }}, your code is {{ vars.x }}"}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: broken}
        spec:
          channel: email
          content:
            en:
              subject: Hello
              body: "Hi {{ user.name }"
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: offers}
        spec:
          form: content
          trigger: {event: signup}
          steps:
            - id: without_x
              type: send
              channel: email
              template: offer
              vars: {y: 1}
            - id: with_x
              type: send
              channel: email
              template: offer
              vars: {x: "${ trigger.props.code }"}
            - id: uses_broken
              type: send
              channel: email
              template: broken
        """
    )
    # The syntax error is reported once, at the template, not again at each step using it.
    assert codes(result) == ["E230"] * 2
    undefined = expect(result, "E230", 29, 17, "spec.steps[0].template")
    assert undefined.message == (
        "template 'offer' en body does not render for step 'without_x' (line 1): "
        "'vars' has no attribute 'x'"
    )
    syntax = expect(result, "E230", 17, 13, "spec.content.en.body")
    assert syntax.message == (
        "template en body does not parse (line 1): syntax error: unexpected '}'"
    )
    assert not [d for d in result.diagnostics if d.path == "spec.steps[2].template"]


def test_e231_marketing_sms_template_without_an_opt_out() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: promo}
        spec:
          channel: sms
          marketing: true
          content:
            zh-CN: {body: "双十一大促，快来抢！"}
            en: {body: "Big sale today. Reply STOP to opt out"}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: notice}
        spec:
          channel: sms
          marketing: false
          content:
            zh-CN: {body: "您的卡已寄出"}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: promo-run}
        spec:
          form: activity
          trigger: {event: signup}
          steps:
            - id: service
              type: send
              channel: sms
              template: notice
              marketing: false
            - id: sold_as_marketing
              type: send
              channel: sms
              template: notice
        """
    )
    assert codes(result) == ["E231", "E231"]
    template = expect(result, "E231", 8, 19, "spec.content.zh-CN.body")
    assert template.message.startswith("marketing SMS (zh-CN) has no opt-out instruction")
    step = expect(result, "E231", 35, 17, "spec.steps[1].template")
    assert "service template 'notice'" in step.message


def test_e231_the_business_line_s_opt_out_pattern_applies() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: ContactPolicy
        metadata: {name: default, businessLine: retail}
        spec: {optOutPattern: "回T退订"}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: promo, businessLine: retail}
        spec:
          channel: sms
          content:
            zh-CN: {body: "大促！拒收请回复R"}
        """
    )
    assert codes(result) == ["E231"]
    assert "'回T退订'" in expect(result, "E231", 12, 19, "spec.content.zh-CN.body").message


def test_e232_template_for_email_sent_on_sms_and_in_a_fallback() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: welcome-mail}
        spec:
          channel: email
          content:
            en: {subject: Welcome, body: "Hello {{ user.name }}"}
        ---
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: welcome-push}
        spec:
          channel: push
          content:
            en: {body: "Hello"}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: welcome}
        spec:
          form: channel
          trigger: {event: signup}
          steps:
            - id: by_sms
              type: send
              channel: sms
              template: welcome-mail
              marketing: false
            - id: by_push
              type: send
              channel: push
              template: welcome-push
              fallback:
                - {channel: sms, template: welcome-mail}
        """
    )
    assert codes(result) == ["E232", "E232"]
    step = expect(result, "E232", 27, 17, "spec.steps[0].template")
    assert step.message == "template 'welcome-mail' is for email, but this sends it on sms"
    expect(result, "E232", 34, 36, "spec.steps[1].fallback[0].template")


# --- E240: events ---------------------------------------------------------------------------


def test_e240_trigger_with_both_event_and_segment() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: vip}
        spec: {match: {tag: vip}}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger:
            event: card_issued
            segment: vip
          steps: [{id: pause, type: wait, duration: 1d}]
        """
    )
    assert codes(result) == ["E240"]
    diagnostic = expect(result, "E240", 12, 5, "spec.trigger")
    assert diagnostic.message == (
        "a trigger needs exactly one of 'event' or 'segment'; this one has both"
    )


def test_e240_trigger_with_neither_event_nor_segment() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {where: "event.props.tier == 'gold'"}
          steps: [{id: pause, type: wait, duration: 1d}]
        """
    )
    assert codes(result) == ["E240"]
    assert expect(result, "E240", 6, 12, "spec.trigger").message.endswith("this one has neither")


def test_e240_goal_and_exit_without_an_event() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: card-activation}
        spec:
          form: product
          trigger: {event: card_issued}
          goal:
            within: 30d
            where: "event.props.channel == 'app'"
          exit:
            - event: card_cancelled
            - where: "event.props.reason == 'fraud'"
          steps: [{id: pause, type: wait, duration: 1d}]
        """
    )
    assert codes(result) == ["E240", "E240"]
    assert expect(result, "E240", 8, 5, "spec.goal").message == "the goal names no event"
    assert expect(result, "E240", 12, 7, "spec.exit[1]").message == "an exit names no event"


# --- Everything at once ---------------------------------------------------------------------


def test_a_file_with_many_problems_reports_them_all_in_one_run() -> None:
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: promo}
        spec:
          channel: sms
          content:
            zh-CN: {body: "大促来了 {{ vars.amount }}"}
        ---
        apiVersion: cjo/v1
        kind: Benefit
        metadata: {name: cashback-20}
        spec: {type: cashbak, value: 20, unit: CNY, validity: 30d}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: vip}
        spec: {match: {tag: vip}}
        ---
        apiVersion: cjo/v1
        kind: Segment
        metadata: {name: vip}
        spec: {match: {tag: gold}}
        ---
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: promo-run}
        spec:
          form: activity
          trigger:
            event: signup
            where: "evnt.props.x == 1"
          goal: {within: 7d}
          steps:
            - id: promo
              type: send
              channel: email
              template: promo
              on: {sent: gfit}
            - id: gift
              type: grant
              benefit: cashback-20
              next: end
            - id: orphan
              type: wait
              duration: 1d
            - id: gift
              type: update
              set: {x: 1}
              set: {y: 2}
        """
    )
    assert codes(result) == [
        "E110",
        "E110",
        "E111",
        "E200",
        "E201",
        "E211",
        "E230",
        "E231",
        "E232",
        "E240",
        "W203",
    ]
    expect(result, "E231", 7, 19, "spec.content.zh-CN.body")
    expect(result, "E110", 12, 14, "spec.type")
    expect(result, "E111", 21, 18, "metadata.name")
    expect(result, "E211", 31, 13, "spec.trigger.where")
    expect(result, "E240", 32, 9, "spec.goal")
    expect(result, "E232", 37, 17, "spec.steps[0].template")
    expect(result, "E230", 37, 17, "spec.steps[0].template")
    expect(result, "E201", 38, 18, "spec.steps[0].on.sent")
    expect(result, "W203", 43, 11, "spec.steps[2].id")
    expect(result, "E200", 46, 11, "spec.steps[3].id")
    expect(result, "E110", 49, 7, "spec.steps[3].set")
    # The Benefit failed its schema (reported once, above): the grant step referring to it
    # gets no E220 on top.
    assert not result.valid


# --- References through the lookup ----------------------------------------------------------

JOURNEY_ON_A_PUBLISHED_SEGMENT = """\
    apiVersion: cjo/v1
    kind: Journey
    metadata: {name: win-back, businessLine: retail}
    spec:
      form: user
      trigger:
        segment: dormant-savers
      steps:
        - id: hook
          type: call
          activity: crm.notify
          with: {list_id: "${ user.id }"}
    """


def _published(business_line: str) -> InMemoryLookup:
    segment = check(
        f"""\
        apiVersion: cjo/v1
        kind: Segment
        metadata: {{name: dormant-savers, businessLine: {business_line}}}
        spec:
          match: {{attr: lifecycle, in: [dormant, churned]}}
        """
    )
    assert segment.diagnostics == []
    return InMemoryLookup.of(
        documents=segment.documents,
        activities=[ActivityDeclaration("crm.notify", _NotifyParams, ("ok",))],
    )


def test_a_segment_published_for_the_business_line_satisfies_the_reference() -> None:
    result = check(JOURNEY_ON_A_PUBLISHED_SEGMENT, _published("retail"))
    assert result.diagnostics == []
    assert result.valid


def test_a_segment_published_for_another_business_line_does_not() -> None:
    result = check(JOURNEY_ON_A_PUBLISHED_SEGMENT, _published("credit-card"))
    assert codes(result) == ["E220"]
    diagnostic = expect(result, "E220", 7, 14, "spec.trigger.segment")
    assert diagnostic.message == "unknown Segment 'dormant-savers' in business line 'retail'"


def test_without_a_lookup_the_reference_and_the_activity_are_unknown() -> None:
    result = check(JOURNEY_ON_A_PUBLISHED_SEGMENT)
    assert codes(result) == ["E220", "E220"]
    expect(result, "E220", 7, 14, "spec.trigger.segment")
    expect(result, "E220", 11, 17, "spec.steps[0].activity")


def test_the_bundle_wins_over_the_lookup_and_is_checked_the_same_way() -> None:
    lookup = _published("retail")
    published_template = check(
        """\
        apiVersion: cjo/v1
        kind: Template
        metadata: {name: win-back-mail, businessLine: retail}
        spec:
          channel: email
          content: {en: {subject: We miss you, body: "Hi {{ vars.name }}"}}
        """
    )
    lookup.publish(published_template.documents[0])
    result = check(
        """\
        apiVersion: cjo/v1
        kind: Journey
        metadata: {name: win-back, businessLine: retail}
        spec:
          form: user
          trigger: {segment: dormant-savers}
          steps:
            - id: mail
              type: send
              channel: sms
              template: win-back-mail
              marketing: false
        """,
        lookup,
    )
    # A published template is checked like one in the file: channel and rendering.
    assert codes(result) == ["E230", "E232"]
    expect(result, "E232", 11, 17, "spec.steps[0].template")
    assert "'vars' has no attribute 'name'" in expect(result, "E230", 11, 17).message
