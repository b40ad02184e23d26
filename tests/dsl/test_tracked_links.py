"""`track("...")` in templates: only URLs written in the template become redirect targets."""

from __future__ import annotations

import pytest

from cjo.dsl import InMemoryLookup, validate
from cjo.dsl._templates import (
    TemplateRenderError,
    check_template,
    link_problems,
    render,
    sample_context,
    tracked_urls,
)
from tests.dsl.test_diagnostics import codes, expect

OFFER = "https://bank.example/offer?id=7"
RATES = "http://bank.example/rates"


def test_tracked_urls_are_the_literals_in_order_each_once() -> None:
    body = (
        f"{{{{ track('{OFFER}') }}}} {{% if user.attrs.vip %}}{{{{ track(\"{RATES}\") }}}}"
        f"{{% endif %}} {{{{ track('{OFFER}') | upper }}}}"
    )
    assert tracked_urls(body) == (OFFER, RATES)
    assert link_problems(body) == []
    assert tracked_urls("no links here") == ()
    assert tracked_urls("{{ broken") == ()  # syntax_problems reports it


def test_rendering_turns_declared_urls_into_links() -> None:
    body = f"a {{{{ track('{OFFER}') }}}} b {{{{ track('{RATES}') }}}} c {{{{ track('{OFFER}') }}}}"
    seen: list[str] = []

    def tracker(url: str) -> str:
        seen.append(url)
        return f"<link {len(seen)}>"

    assert render(body, {}, track=tracker) == "a <link 1> b <link 2> c <link 3>"
    assert seen == [OFFER, RATES, OFFER]
    # Without a tracker (validation, previews) the URL stays as written.
    assert render(body, {}) == f"a {OFFER} b {RATES} c {OFFER}"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{{ track(vars.url) }}", "quoted string"),
        ("{{ track('https://a.example/' ~ vars.id) }}", "quoted string"),
        ("{{ track('https://a.example/' + vars.id) }}", "quoted string"),
        ("{{ track() }}", "quoted string"),
        ("{{ track('https://a.example', 'https://b.example') }}", "quoted string"),
        ("{{ track(url='https://a.example') }}", "quoted string"),
        ("{{ track(*vars.urls) }}", "quoted string"),
        ("{{ track(42) }}", "quoted string"),
        ("{% set t = track %}{{ t('https://a.example') }}", "called directly"),
        ("{{ [track][0]('https://a.example') }}", "called directly"),
        ("{{ track('javascript:alert(1)') }}", "http or https"),
        ("{{ track('//evil.example/x') }}", "http or https"),
        ("{{ track('/relative/path') }}", "http or https"),
        ("{{ track('https:///no-host') }}", "with a host"),
        ("{{ track('https://a.example/x y') }}", "no spaces"),
        ("{{ track('https://a.example/" + "x" * 2100 + "') }}", "2048"),
    ],
)
def test_anything_but_a_literal_http_url_is_refused(body: str, says: str) -> None:
    problems = link_problems(body)
    assert problems and says in problems[0].message, problems
    assert problems[0].line == 1
    # The sample render used by validation refuses it too, with the same words.
    assert check_template(body, step_vars={"url": OFFER}, step_ids=[]) == problems


def test_problems_carry_the_line_inside_the_template() -> None:
    body = "Hello\n{{ track('https://a.example') }}\n\n{{ track(vars.url) }}"
    (problem,) = link_problems(body)
    assert problem.line == 4


def test_a_computed_url_fails_at_render_time_even_without_validation() -> None:
    context = sample_context({}, [])
    context["vars"] = {"url": OFFER}
    with pytest.raises(TemplateRenderError, match="only takes a URL written in the template"):
        render("{{ track(vars.url) }}", context, track=lambda url: url)


BUNDLE = """\
apiVersion: cjo/v1
kind: Journey
metadata: {name: offer}
spec:
  form: channel
  trigger: {event: signup}
  steps:
    - {id: push_offer, type: send, channel: push, template: offer-push}
---
apiVersion: cjo/v1
kind: Template
metadata: {name: offer-push}
spec:
  channel: push
  content:
    en:
      subject: "Offer"
      body: |
        Hi {{ user.name }}
        %s
"""


def test_a_template_with_tracked_links_validates() -> None:
    result = validate(BUNDLE % f"{{{{ track('{OFFER}') }}}}", "bundle.yaml")
    assert result.valid, [d.format_text() for d in result.diagnostics]


def test_a_computed_url_is_one_e230_at_the_template_body() -> None:
    result = validate(BUNDLE % "{{ track(vars.url) }}", "bundle.yaml")
    # Reported where the template is defined, once; the journey that sends it adds nothing.
    assert codes(result) == ["E230"]
    diagnostic = expect(result, "E230", 18, 13, "spec.content.en.body")
    assert "untrackable link (line 2)" in diagnostic.message
    assert "quoted string" in diagnostic.message


def test_a_published_template_misusing_track_is_reported_at_the_send() -> None:
    """A template from elsewhere is rendered for the send step, which refuses it too."""
    journey, template = (BUNDLE % "{{ track(vars.url) }}").split("---\n")
    published = validate(template, "templates.yaml")
    assert codes(published) == ["E230"]
    result = validate(journey, "bundle.yaml", InMemoryLookup.of(published.documents))
    assert codes(result) == ["E230"]
    assert "quoted string" in result.diagnostics[0].message
    assert "step 'push_offer'" in result.diagnostics[0].message
