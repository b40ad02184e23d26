"""Tracked links (`GET /r/{message_id}/{index}`): record the click, then redirect.

The target is the URL the message's template declared with `track("...")`, stored with the
message when it was sent; the request only says which message and which of its links,
and the signature (`?s=`) proves CJO made that link. Nothing in the request can choose
where the customer is sent, so this is no open redirect. Anything else is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import RedirectResponse

from cjo.api.deps import OptionalRoutingDep, SessionsDep, StateDep
from cjo.api.problems import not_found, problem_responses
from cjo.delivery.clicks import TrackedLinks
from cjo.delivery.feedback import DeliveryFeedback
from cjo.runtime.log import get_logger

router = APIRouter(tags=["links"])
log = get_logger(__name__)


@router.get(
    "/r/{message_id}/{index}",
    summary="Follow a tracked link",
    status_code=302,
    response_class=RedirectResponse,
    responses=problem_responses(404, 422),
)
async def follow_link(
    message_id: Annotated[str, Path(min_length=1, max_length=64)],
    index: Annotated[int, Path(ge=0, le=10_000)],
    state: StateDep,
    sessions: SessionsDep,
    routing: OptionalRoutingDep,
    signature: Annotated[str, Query(alias="s", max_length=64)] = "",
) -> RedirectResponse:
    """Records `clicked` (once per link of a message) and answers 302 to the link's URL."""
    # A customer must get where the link promised even while Temporal is away: the click
    # is then stored, only not passed on to waiting journeys.
    links = TrackedLinks(
        sessions,
        DeliveryFeedback(sessions, routing),
        state.settings.link_secret.get_secret_value(),
    )
    url = await links.click(message_id, index, signature, datetime.now(UTC))
    if url is None:
        raise not_found("no such link")
    return RedirectResponse(url, status_code=302)
