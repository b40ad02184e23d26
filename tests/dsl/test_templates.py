from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cjo.dsl._templates import (
    TemplateProblem,
    TemplateRenderError,
    check_template,
    render,
    sample_context,
)

STEP_IDS = ["welcome", "risk_check", "wait_activation"]
STEP_VARS: dict[str, Any] = {
    "x": "现金红包",
    "limit": 5000,
    "amount": "${ trigger.props.amount }",
    "card": {"tier": "gold", "last4": "1234"},
}


def problems(body: str, **overrides: Any) -> list[TemplateProblem]:
    kwargs: dict[str, Any] = {"step_vars": STEP_VARS, "step_ids": STEP_IDS}
    kwargs.update(overrides)
    return check_template(body, **kwargs)


def sample_render(body: str) -> str:
    return render(body, sample_context(STEP_VARS, STEP_IDS))


# --- templates that must pass -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "【示例银行】{{ user.name }}您好，您的{{ event.props.tier }}卡已寄出。拒收请回复R",
        "{% if user.attrs.aum > 100000 %}尊敬的贵宾{% else %}您好{% endif %}",
        "{% if 100000 <= user.attrs.aum %}贵宾{% endif %}",
        "{% if user.attrs.vip == true %}V{% endif %}",
        "本月消费{{ trigger.props.amount | round(2) }}元",
        "恭喜获得{{ benefit.value }}{{ benefit.unit }}返现，券码{{ benefit.code }}",
        "{{ benefit.id }}{{ benefit.name }}{{ benefit.type }}{{ benefit.quantity }}",
        "有效期至{{ benefit.expires_at.strftime('%Y-%m-%d') }}",
        "{{ now.strftime('%Y-%m-%d') }}",
        "{% for t in user.tags %}{{ t }}{% endfor %}",
        "{{ user.id }}{{ user.phone }}{{ user.email }}{{ user.locale }}{{ user.timezone }}",
        "{{ user.birthday.month }}月{{ user.birthday.day }}日，{{ user.created_at.year }}",
        "{{ user.lifecycle }}{{ user.addresses.push }}{{ user.consents.sms }}",
        "{{ trigger.name }}{{ trigger.ts.isoformat() }}{{ event.name }}{{ event.ts }}",
        "{{ steps.welcome.outcome }}{{ steps.risk_check.result.score }}",
        "{{ steps.wait_activation.event.name }}{{ steps.wait_activation.event.props.channel }}",
        "{{ steps['risk_check'].result['deep'].chain[0].x }}",
        "{{ journey.name }} v{{ journey.version }}",
        "{{ vars.x }}，额度{{ vars.limit }}，{{ vars.card.tier }}卡尾号{{ vars.card.last4 }}",
        "{{ vars.amount }}{{ vars.amount.anything.below | upper }}",
        "{{ user.attrs.nickname | default(user.name) | upper }}",
        "{{ '%.2f' | format(trigger.props.amount) }}{{ '%d' | format(trigger.props.count) }}",
        "{{ '{:,.2f}'.format(trigger.props.amount) }}",
        "{{ trigger.props.amount * 1.05 }}{{ 2 + trigger.props.n }}{{ -trigger.props.n }}",
        "{{ trigger.props.amount | int }}{{ trigger.props.amount | float | round(1, 'floor') }}",
        "{{ user.attrs.name ~ '先生' }}{{ user.attrs.name.startswith('张') }}",
        "{{ user.attrs.name[:1] }}{{ user.attrs.list | length }}{{ user.attrs.list | join(',') }}",
        "{% for k, v in user.attrs.items() %}{{ k }}={{ v }}{% endfor %}",
        "{% for item in trigger.props.lines %}{{ item.sku }}{% else %}无{% endfor %}",
        "{{ trigger.props.lines | first }}{{ trigger.props.lines | last }}",
        "{% for item in trigger.props['items'] %}{{ item.sku }}{% endfor %}",
        "{{ trigger.props.scores | max }}{{ trigger.props.scores | min }}",
        "{{ user.attrs | dictsort }}{{ trigger.props | tojson }}{{ benefit | tojson }}",
        "{% if user.attrs.expires_at < now %}已过期{% endif %}",
        "{% if 'gold' in user.attrs.tiers %}金{% endif %}",
        "{% if user.attrs.tier in ['a', 'b'] %}a{% endif %}",
        "{% if user.foo is defined %}{{ user.foo }}{% endif %}{{ vars.missing | default('无') }}",
        "{% set greeting = '您好' %}{{ greeting }}，{{ user.name }}",
        "{% macro money(v) %}{{ v | round(2) }}元{% endmacro %}{{ money(trigger.props.amount) }}",
        "{{ user.attrs.alters_data }}{{ user.attrs.unsafe_callable() }}",
        "{{ user.attrs.jinja_pass_arg }}{{ user.attrs.__private }}",
        "{{ range(trigger.props.n) | list }}",
        "",
        "没有变量的纯文本，回复R拒收",
    ],
)
def test_valid_templates_have_no_problem(body: str) -> None:
    assert problems(body) == []


def test_sample_text_shows_which_data_value_it_stands_for() -> None:
    out = sample_render("{{ user.name }}:{{ user.attrs.card_tier }}:{{ vars.x }}")
    assert out == "示例用户:<user.attrs.card_tier>:现金红包"


def test_dict_method_names_resolve_as_on_a_real_dict() -> None:
    # At run time `props.items` is dict.items, not the key "items"; the sample agrees.
    [problem] = problems("{% for i in trigger.props.items %}{{ i }}{% endfor %}")
    assert "not iterable" in problem.message


def test_journey_name_reaches_the_sample() -> None:
    out = render("{{ journey.name }}", sample_context({}, [], journey_name="card-activation"))
    assert out == "card-activation"


def test_if_on_sample_data_checks_the_guarded_body() -> None:
    found = problems("{% if user.attrs.aum > 100000 %}{{ vars.nope }}{% endif %}")
    assert found == [TemplateProblem("'vars' has no attribute 'nope'", 1)]


# --- templates that must fail -------------------------------------------------------------


def test_unclosed_print_is_a_syntax_error_with_line() -> None:
    [problem] = problems("【示例银行】\n{{ user.name 您好")
    assert problem.message.startswith("syntax error: ")
    assert problem.line == 2


def test_unexpected_brace_is_a_syntax_error() -> None:
    [problem] = problems("{{ } }}")
    assert problem.message == "syntax error: unexpected '}'"
    assert problem.line == 1


def test_unknown_filter() -> None:
    [problem] = problems("第一行\n{{ user.name | shout }}")
    assert "shout" in problem.message
    assert problem.line == 2


def test_undefined_var_is_a_problem() -> None:
    assert problems("您的{{ vars.amount2 }}元") == [
        TemplateProblem("'vars' has no attribute 'amount2'", 1)
    ]


def test_defined_literal_var_renders() -> None:
    assert problems("{{ vars.x }}", step_vars={"x": 1}) == []
    assert sample_render("{{ vars.x }}") == "现金红包"


def test_var_check_uses_the_given_step_vars() -> None:
    assert problems("{{ vars.x }}", step_vars={}) == [
        TemplateProblem("'vars' has no attribute 'x'", 1)
    ]


def test_nested_literal_var_is_strict() -> None:
    assert problems("{{ vars.card.colour }}") == [
        TemplateProblem("'vars.card' has no attribute 'colour'", 1)
    ]


@pytest.mark.parametrize("expression", ["${ user.attrs.x }", "${trigger.props.amount}"])
def test_expression_var_accepts_any_use(expression: str) -> None:
    body = "{{ vars.v.a.b | round(2) }}{% if vars.v > 3 %}{{ vars.v | upper }}{% endif %}"
    assert problems(body, step_vars={"v": expression}) == []


def test_nested_expression_var_accepts_any_use() -> None:
    assert problems("{{ vars.v.a.b }}", step_vars={"v": {"a": "${ x }"}}) == []


def test_misspelt_profile_field() -> None:
    assert problems("{{ user.nmae }}您好") == [TemplateProblem("'user' has no attribute 'nmae'", 1)]


@pytest.mark.parametrize(
    ("body", "owner", "name"),
    [
        ("{{ trigger.prop.x }}", "trigger", "prop"),
        ("{{ event.timestamp }}", "event", "timestamp"),
        ("{{ benefit.amount }}", "benefit", "amount"),
        ("{{ journey.title }}", "journey", "title"),
        ("{{ steps.welcome.status }}", "steps.welcome", "status"),
        ("{{ steps.wait_activation.event.data }}", "steps.wait_activation.event", "data"),
    ],
)
def test_strict_records(body: str, owner: str, name: str) -> None:
    assert problems(body) == [TemplateProblem(f"{owner!r} has no attribute {name!r}", 1)]


def test_unknown_step() -> None:
    assert problems("a\nb\n{{ steps.unknown_step.outcome }}") == [
        TemplateProblem("'steps' has no attribute 'unknown_step'", 3)
    ]


def test_unknown_root_variable() -> None:
    assert problems("{{ customer.name }}") == [TemplateProblem("'customer' is undefined", 1)]


def test_undefined_in_loop_reports_its_line() -> None:
    body = "{% for t in user.tags %}\n  {{ t }}\n  {{ vars.nope }}\n{% endfor %}"
    assert problems(body) == [TemplateProblem("'vars' has no attribute 'nope'", 3)]


def test_strict_value_fields_stay_strict() -> None:
    [problem] = problems("{{ user.name.nope }}")
    assert "nope" in problem.message


@pytest.mark.parametrize(
    "body",
    [
        "{{ user.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ user.attrs.__class__.__base__ }}",
        "{{ now.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ vars.pop('x') }}",
        "{{ user.tags.append('x') }}",
        "{{ user._label }}",
    ],
)
def test_sandbox_blocks_internals(body: str) -> None:
    [problem] = problems(body)
    assert "not allowed" in problem.message


@pytest.mark.parametrize(
    "body",
    [
        "{{ 10 ** 100000 }}",
        "{{ 'a' * 1000000000 }}",
        "{{ [1] * 1000000000 }}",
        "{% for i in range(1000000000) %}{% endfor %}",
    ],
)
def test_oversized_work_is_refused(body: str) -> None:
    assert len(problems(body)) == 1


@pytest.mark.parametrize(
    "body",
    [
        "{{ 1 / 0 }}",
        "{% include 'other' %}",
        "{{ user.attrs.x | tojson }}{{ now | tojson }}{{ {1: cycler} | tojson }}",
        "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}",
        "{{ vars.card | attr('__class__') }}",
    ],
)
def test_other_failures_are_problems(body: str) -> None:
    [problem] = problems(body)
    assert problem.message


def test_problem_message_is_short() -> None:
    [problem] = problems("{{ " + "x" * 5000 + " }}")
    assert len(problem.message) <= 300


# --- run-time rendering -------------------------------------------------------------------


def test_render_with_real_values() -> None:
    context = {
        "user": {"name": "张三", "attrs": {"aum": 250000.5}, "tags": ["payroll", "vip"]},
        "event": {"name": "card_issued", "props": {"tier": "白金"}},
        "benefit": {"value": 20, "unit": "元"},
        "now": datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        "vars": {"x": 1},
    }
    body = (
        "【示例银行】{{ user.name }}您好，您的{{ event.props.tier }}卡已寄出。"
        "{% if user.attrs.aum > 100000 %}贵宾{% endif %}"
        "{{ user.attrs.aum | round(1) }}{{ benefit.value }}{{ benefit.unit }}"
        "{{ now.strftime('%Y-%m-%d') }}{% for t in user.tags %}[{{ t }}]{% endfor %}"
    )
    assert render(body, context) == (
        "【示例银行】张三您好，您的白金卡已寄出。贵宾250000.520元2026-03-01[payroll][vip]"
    )


def test_render_undefined_is_render_error() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("hi\n{{ user.nmae }}", {"user": {"name": "张三"}})
    assert "nmae" in info.value.message
    assert info.value.line == 2
    assert str(info.value) == info.value.message


def test_render_syntax_error() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("{% if %}", {})
    assert info.value.message.startswith("syntax error: ")
    assert info.value.line == 1


def test_render_security_error() -> None:
    with pytest.raises(TemplateRenderError, match="not allowed"):
        render("{{ user.__class__.__subclasses__() }}", {"user": {"name": "x"}})


def test_render_does_not_mutate_context() -> None:
    tags = ["a"]
    with pytest.raises(TemplateRenderError):
        render("{{ user.tags.append('b') }}", {"user": {"tags": tags}})
    assert tags == ["a"]


def test_render_tojson_handles_dates() -> None:
    out = render("{{ d | tojson }}", {"d": {"day": date(2026, 1, 2), "名": "值"}})
    assert out == '{"day": "2026-01-02", "名": "值"}'


def test_render_other_errors_are_render_errors() -> None:
    with pytest.raises(TemplateRenderError, match="division by zero"):
        render("{{ a / b }}", {"a": 1, "b": 0})


def test_render_caches_compiled_templates() -> None:
    from cjo.dsl import _templates

    _templates._compile.cache_clear()
    for _ in range(3):
        assert render("{{ a }}", {"a": "x"}) == "x"
    info = _templates._compile.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_sample_context_is_fresh_each_time() -> None:
    first = sample_context({"x": 1}, ["a"])
    second = sample_context({"x": 1}, ["a"])
    assert first["vars"] is not second["vars"]
    assert set(first) == {"user", "trigger", "event", "steps", "journey", "now", "vars", "benefit"}
    assert first["now"].tzinfo is not None


# --- never raises -------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", " ", "\n", "if", "endif", "for", "in", "endfor",
        "else", "set", "=", "macro", "endmacro", "user", "vars", "steps", "benefit", "now",
        "trigger", "event", "journey", ".", "attrs", "props", "name", "x", "__class__", "|",
        "round", "upper", "default", "(", ")", "[", "]", "'", '"', ",", "0", "2", "100000",
        ">", "<", "==", "+", "*", "**", "/", "~", "not", "and", "or", "is", "defined",
        "您好", "【示例银行】", "拒收请回复R", "$", "${", "}", "-", "raw", "endraw",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=30).map("".join)))
def test_check_template_never_raises(body: str) -> None:
    found = check_template(body, step_vars=STEP_VARS, step_ids=STEP_IDS)
    assert isinstance(found, list)
    for problem in found:
        assert isinstance(problem, TemplateProblem)
        assert problem.message
        assert problem.line is None or problem.line >= 1


@settings(max_examples=100, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_render_raises_only_render_errors(body: str) -> None:
    try:
        render(body, {"user": {"name": "x"}, "vars": {}})
    except TemplateRenderError:
        pass
