"""`cjo campaign`: create, list and read campaigns, move them through their life cycle,
and read their statistics."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from cjo.cli.client.api import CLIENT_EPILOG, Api, ApiRefusal, with_api
from cjo.cli.client.text import counts, fields, percent, points, table, when

# The state each move leads to once it is done.
_MOVES = {
    "submit": "submitted",
    "approve": "approved",
    "reject": "draft",
    "launch": "running",
    "pause": "paused",
    "resume": "running",
    "stop": "stopped",
}


def _campaign_path(campaign_id: str, *action: str) -> str:
    # Quoted: whatever is typed for ID stays one path segment.
    return "/".join(["/v1/campaigns", quote(campaign_id, safe=""), *action])


@click.group("campaign", epilog=CLIENT_EPILOG)
def campaign_group() -> None:
    """Campaigns through the API: create, review, launch, pause, resume, stop, stats.

    A campaign goes draft → submitted → approved → running ⇄ paused → completed or
    stopped. An approver other than the submitter approves it.
    """


def _campaign_text(campaign: dict[str, Any]) -> str:
    created = _by(when(campaign.get("created_at")), campaign.get("created_by"))
    submitted = _by(when(campaign.get("submitted_at")), campaign.get("submitted_by"))
    settings = campaign.get("settings") or {}
    live = campaign.get("live")
    live_text = (
        f"{live.get('state')}; enrolled {live.get('enrolled')}; fire {live.get('fire')}"
        if isinstance(live, dict)
        else None
    )
    return fields(
        [
            ("id", campaign.get("id")),
            ("state", campaign.get("state")),
            ("journey", campaign.get("journey")),
            ("journey version", campaign.get("journey_version")),
            ("business line", campaign.get("business_line")),
            ("settings", ", ".join(f"{k}={v}" for k, v in settings.items()) or None),
            ("created", created),
            ("submitted", submitted),
            ("audience", campaign.get("audience_size")),
            ("approvals needed", campaign.get("approvals_required")),
            ("launched", when(campaign.get("launched_at"))),
            ("ended", when(campaign.get("ended_at"))),
            ("live", live_text),
        ]
    )


def _by(moment: str | None, who: object) -> str | None:
    if moment is None:
        return None
    return f"{moment} by {who}" if who else moment


def _moved_text(move: str, campaign: dict[str, Any]) -> str:
    """One line on where the move left the campaign."""
    name = f"campaign {campaign.get('id')}"
    state = campaign.get("state")
    if move == "submit":
        required = campaign.get("approvals_required")
        return (
            f"{name} is submitted: audience {campaign.get('audience_size')}, "
            f"{required} approval(s) needed"
        )
    if move == "approve" and state == "submitted":
        return (
            f"{name} is still submitted: your approval is recorded; it needs "
            f"{campaign.get('approvals_required')} approvals by different approvers"
        )
    if move == "reject":
        return f"{name} is back to draft; its approvals are void"
    if state != _MOVES[move] and not (move == "launch" and state != "approved"):
        return f"{name} is {state}: the {move} is under way"
    return f"{name} is {state}"


def _move_command(move: str, summary: str) -> click.Command:
    @with_api
    def run(api: Api, campaign_id: str) -> None:
        answer = api.call("POST", _campaign_path(campaign_id, move))
        _show_moved(api, move, answer)

    run.__doc__ = summary
    command = campaign_group.command(move, epilog=CLIENT_EPILOG)(
        click.argument("campaign_id", metavar="ID")(run)
    )
    return command


def _show_moved(api: Api, move: str, answer: dict[str, Any]) -> None:
    if api.as_json:
        api.emit(answer)
    else:
        click.echo(_moved_text(move, answer))


@campaign_group.command("create", epilog=CLIENT_EPILOG)
@click.argument("journey")
@click.option("--business-line", "-b", required=True, help="The journey's business line.")
@click.option("--version", help="The journey version to pin (default: the newest).")
@click.option(
    "--rate-per-second",
    type=click.FloatRange(min=0, min_open=True),
    help="Enrol at most this many customers a second.",
)
@click.option("--page-size", type=click.IntRange(1, 10_000), help="Customers enrolled per page.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the new campaign's id.")
@with_api
def campaign_create_command(
    api: Api,
    journey: str,
    business_line: str,
    version: str | None,
    rate_per_second: float | None,
    page_size: int | None,
    quiet: bool,
) -> None:
    """Create a draft campaign of the published JOURNEY, pinned to one version of it."""
    body = {
        "journey": journey,
        "business_line": business_line,
        "version": version,
        "rate_per_second": rate_per_second,
        "page_size": page_size,
    }
    answer = api.call(
        "POST", "/v1/campaigns", json_body={k: v for k, v in body.items() if v is not None}
    )
    if api.as_json:
        api.emit(answer)
    elif quiet:
        click.echo(answer.get("id"))
    else:
        click.echo(_campaign_text(answer))


@campaign_group.command("list", epilog=CLIENT_EPILOG)
@click.option("--business-line", "-b", help="Only this business line's.")
@click.option("--journey", help="Only this journey's.")
@click.option("--state", help="Only campaigns in this state (draft, running, ...).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="Where the previous page ended (printed below it).")
@with_api
def campaign_list_command(
    api: Api,
    business_line: str | None,
    journey: str | None,
    state: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """The campaigns of your business lines, newest first."""
    params = {
        "business_line": business_line,
        "journey": journey,
        "state": state,
        "limit": limit,
        "cursor": cursor,
    }
    answer = api.call("GET", "/v1/campaigns", params=params)
    if api.as_json:
        api.emit(answer)
        return
    items = answer.get("items") or []
    if not items:
        click.echo("no campaigns", err=True)
    else:
        rows = [
            (
                item.get("id"),
                item.get("state"),
                item.get("business_line"),
                item.get("journey"),
                item.get("journey_version"),
                when(item.get("created_at")),
            )
            for item in items
        ]
        headers = ("ID", "STATE", "BUSINESS LINE", "JOURNEY", "VERSION", "CREATED")
        click.echo(table(headers, rows))
    if answer.get("next_cursor"):
        click.echo(f"more: --cursor {answer['next_cursor']}", err=True)


@campaign_group.command("get", epilog=CLIENT_EPILOG)
@click.argument("campaign_id", metavar="ID")
@with_api
def campaign_get_command(api: Api, campaign_id: str) -> None:
    """One campaign: its journey version, state, review and, while it runs, live status."""
    answer = api.call("GET", _campaign_path(campaign_id))
    if api.as_json:
        api.emit(answer)
    else:
        click.echo(_campaign_text(answer))


_move_command("submit", "Submit the draft campaign ID for approval (its audience is measured).")
_move_command("launch", "Launch the approved campaign ID: its workflow starts enrolling.")
_move_command("pause", "Pause the running campaign ID: no enrolment; runs hold before sends.")
_move_command("resume", "Resume the paused campaign ID.")
_move_command("stop", "Stop campaign ID and every run in it (a draft is simply withdrawn).")


@campaign_group.command("approve", epilog=CLIENT_EPILOG)
@click.argument("campaign_id", metavar="ID")
@click.option(
    "--version",
    help="The journey version you reviewed: refused if the campaign now pins another.",
)
@click.option("--comment", help="A note kept with the approval.")
@with_api
def campaign_approve_command(
    api: Api, campaign_id: str, version: str | None, comment: str | None
) -> None:
    """Approve the submitted campaign ID (an approver; never the one who submitted it)."""
    body = {"journey_version": version, "comment": comment}
    given = {k: v for k, v in body.items() if v is not None}
    answer = api.call("POST", _campaign_path(campaign_id, "approve"), json_body=given or None)
    _show_moved(api, "approve", answer)


@campaign_group.command("reject", epilog=CLIENT_EPILOG)
@click.argument("campaign_id", metavar="ID")
@click.option("--reason", required=True, help="Why (up to 150 characters).")
@with_api
def campaign_reject_command(api: Api, campaign_id: str, reason: str) -> None:
    """Send the submitted or approved campaign ID back to draft (an approver)."""
    answer = api.call("POST", _campaign_path(campaign_id, "reject"), json_body={"reason": reason})
    _show_moved(api, "reject", answer)


@campaign_group.command("stats", epilog=CLIENT_EPILOG)
@click.argument("campaign_id", metavar="ID")
@with_api
def campaign_stats_command(api: Api, campaign_id: str) -> None:
    """Campaign ID step by step (entered, waiting, outcomes), how runs ended, and the A/B
    test: each variant's conversions and its lift over the holdout, with a 95% interval.

    The steps are listed in the journey's order, as the campaign's journey version has them.
    """
    answer = api.call("GET", _campaign_path(campaign_id, "stats"))
    if api.as_json:
        api.emit(answer)
    else:
        click.echo(stats_text(answer, _step_order(api, campaign_id)))


def _step_order(api: Api, campaign_id: str) -> list[str]:
    """The step ids of the campaign's journey version, in the order they are written.

    The statistics name the steps in no useful order; a funnel reads top to bottom. Without
    the journey (a reader may lack it, say) the table keeps the statistics' order.
    """
    try:
        campaign = api.call("GET", _campaign_path(campaign_id))
        journey = quote(str(campaign["journey"]), safe="")
        pinned = quote(str(campaign["journey_version"]), safe="")
        version = api.call(
            "GET",
            f"/v1/resources/Journey/{journey}/versions/{pinned}",
            params={"business_line": campaign["business_line"]},
        )
        steps = version["document"]["spec"]["steps"]
        return [str(step["id"]) for step in steps]
    except (ApiRefusal, KeyError, TypeError):
        return []


def stats_text(stats: dict[str, Any], order: list[str] | None = None) -> str:
    """The statistics as tables: steps (in `order`, then any others), ends, variants."""
    steps: dict[str, Any] = stats.get("steps") or {}
    known = [step for step in order or [] if step in steps]
    ordered = known + [step for step in steps if step not in known]
    rows = [
        (
            step,
            steps[step].get("entered"),
            steps[step].get("waiting"),
            counts(steps[step].get("outcomes") or {}),
        )
        for step in ordered
    ]
    parts = [table(("STEP", "ENTERED", "WAITING", "OUTCOMES"), rows, right={1, 2})]
    ended = stats.get("ended") or {}
    parts.append(f"\nended: {counts(ended) if ended else 'none yet'}")
    variants: dict[str, Any] = stats.get("variants") or {}
    holdout: dict[str, Any] = stats.get("holdout") or {}
    if variants or holdout.get("entrants"):
        lift: dict[str, Any] = stats.get("lift") or {}
        groups = [(name, figures, lift.get(name)) for name, figures in variants.items()]
        groups.append(("(holdout)", holdout, None))
        conversion_rows = [
            (
                name,
                figures.get("entrants"),
                figures.get("conversions"),
                percent(figures.get("rate")),
                _lift_text(gain) if isinstance(gain, dict) else None,
            )
            for name, figures, gain in groups
        ]
        headers = ("VARIANT", "ENTRANTS", "CONVERSIONS", "RATE", "LIFT, POINTS (95% CI)")
        parts.append("\n" + table(headers, conversion_rows, right={1, 2, 3}))
    return "\n".join(parts)


def _lift_text(lift: dict[str, Any]) -> str:
    return f"{points(lift['value'])} [{points(lift['ci_low'])}, {points(lift['ci_high'])}]"
