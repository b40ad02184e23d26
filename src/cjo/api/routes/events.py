"""Events in (`POST /v1/events`): stored durably, answered 202, then routed to journeys.

Operators (a service key, typically) send them. Events are facts about customers, not
about a business line: they go to every line's journeys that wait for them, whoever sends.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks
from pydantic import BaseModel, ConfigDict

from cjo.activities.people.profiles import EventInput, IngestEventsInput
from cjo.activities.runs.models import RoutedEvent
from cjo.activities.runs.routing import RouteEventsInput, RoutingActivities, stored_events
from cjo.api.audit import AuditDep
from cjo.api.auth import Operator
from cjo.api.deps import ProfilesDep, RoutingDep, StateDep
from cjo.api.problems import problem_responses, too_large
from cjo.runtime.log import get_logger

router = APIRouter(prefix="/v1/events", tags=["events"])
log = get_logger(__name__)


class EventBatch(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "id": "core-banking/evt-000918273",
                            "user_id": "u-10293",
                            "name": "card_activated",
                            "props": {"card_tier": "gold", "channel": "app"},
                            "ts": "2026-11-26T09:15:00+08:00",
                        },
                        {
                            "id": "core-banking/evt-000918274",
                            "user_id": "u-10294",
                            "name": "login",
                            "props": {},
                            "ts": "2026-11-26T09:15:04+08:00",
                        },
                    ]
                }
            ]
        }
    )

    events: list[EventInput]


class EventsAccepted(BaseModel):
    """`duplicates`: events whose id was seen before (in this batch or earlier)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 2, "duplicates": 0}]})

    accepted: int
    duplicates: int


@router.post(
    "",
    status_code=202,
    summary="Send customer events",
    responses=problem_responses(403, 413, 422),
)
async def post_events(
    _principal: Operator,
    audit: AuditDep,
    state: StateDep,
    batch: EventBatch,
    profiles: ProfilesDep,
    routing: RoutingDep,
    background: BackgroundTasks,
) -> EventsAccepted:
    """Up to 1,000 events (`max_batch`); answered once they are stored, routed right after.

    Each event is stored once per `id` (the sender's own, its deduplication key): a repeat,
    in this batch or an earlier one, counts as a duplicate and is not routed again. Routing
    starts event-triggered journeys and reaches runs that wait for the event.
    """
    limit = state.settings.max_batch
    if len(batch.events) > limit:
        raise too_large(f"{len(batch.events)} events; the limit is {limit} a request")
    # One audit row per batch: the events themselves are stored, each under its own id.
    audit.target("events", f"batch of {len(batch.events)}")
    audit.after([event.id for event in batch.events])
    stored = await profiles.ingest_events(IngestEventsInput(events=batch.events))
    fresh = stored_events(batch.events, stored.accepted_ids)
    if fresh:
        # After the answer: the sender's retry would be refused as duplicate anyway, so
        # holding the answer back until routing ends would only slow senders down.
        background.add_task(_route, routing, fresh)
    return EventsAccepted(accepted=stored.accepted, duplicates=stored.duplicates)


async def _route(routing: RoutingActivities, events: list[RoutedEvent]) -> None:
    try:
        result = await routing.route_events(RouteEventsInput(events=events))
    except Exception:  # noqa: BLE001 - the events are stored; the answer has gone out
        log.exception("routing events failed", events=len(events), first_id=events[0].id)
        return
    log.info(
        "events routed",
        events=len(events),
        started=result.started,
        signalled=result.signalled,
        refused=result.refused,
    )
