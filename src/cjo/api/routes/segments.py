"""Segments (people): how many match now, and a sample with masked PII."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from cjo.activities.people.segments import (
    CountSegmentInput,
    SampledMember,
    SampleSegmentInput,
    SegmentActivities,
    SegmentError,
)
from cjo.api.auth import Principal, Viewer
from cjo.api.deps import ResourcesDep, SessionsDep
from cjo.api.problems import ApiProblem, problem_responses
from cjo.api.routes._resources import LineQuery, resource_head
from cjo.control.resources import ResourceActivities
from cjo.steps.contracts import DEFAULT_TIMEZONE

router = APIRouter(prefix="/v1/segments", tags=["segments"])
SegmentName = Annotated[str, Path(min_length=1, max_length=64)]


_ABOUT_EXAMPLE: dict[str, Any] = {
    "segment": "dormant-savers",
    "business_line": "retail",
    "version": "5b0e1c7d9a2f3e41",
    "at": "2026-11-26T09:00:00Z",
}


class _SegmentAt(BaseModel):
    """Which segment (its newest version), and when it was evaluated."""

    segment: str
    business_line: str
    version: str
    at: datetime


class SegmentCountOut(_SegmentAt):
    """Members of the segment's newest version at `at`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_ABOUT_EXAMPLE, "count": 152340}]})

    count: int


class SegmentSampleOut(_SegmentAt):
    """A spread of members (not the first by id); names, phones and emails are masked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_ABOUT_EXAMPLE,
                    "members": [
                        {
                            "id": "u-10293",
                            "name": "王*明",
                            "phone": "138****0001",
                            "email": "l***@example.com",
                            "lifecycle": "dormant",
                            "tags": ["payroll"],
                        }
                    ],
                }
            ]
        }
    )

    members: list[SampledMember]


@router.get(
    "/{name}/count", responses=problem_responses(401, 403, 404, 422), summary="Count a segment"
)
async def count_segment(
    name: SegmentName,
    principal: Viewer,
    resources: ResourcesDep,
    sessions: SessionsDep,
    business_line: LineQuery = None,
) -> SegmentCountOut:
    """How many customers are in the segment now (counted in the database)."""
    found = await _published(resources, principal, name, business_line)
    try:
        counted = await SegmentActivities(sessions).count(CountSegmentInput(**found.query))
    except SegmentError as error:
        raise _unusable(name, error) from None
    return SegmentCountOut(count=counted.count, **found.about)


@router.get(
    "/{name}/sample",
    responses=problem_responses(401, 403, 404, 422),
    summary="Sample a segment (PII masked)",
)
async def sample_segment(
    name: SegmentName,
    principal: Viewer,
    resources: ResourcesDep,
    sessions: SessionsDep,
    business_line: LineQuery = None,
    size: Annotated[int, Query(ge=1, le=100, description="how many members")] = 20,
) -> SegmentSampleOut:
    """A few of the segment's members, to check it picks whom it should; PII masked."""
    found = await _published(resources, principal, name, business_line)
    try:
        sampled = await SegmentActivities(sessions).sample(
            SampleSegmentInput(**found.query, size=size)
        )
    except SegmentError as error:
        raise _unusable(name, error) from None
    return SegmentSampleOut(members=sampled.members, **found.about)


@dataclass(frozen=True)
class _Published:
    """A published segment as the segment activities take it (`query`) and as answers
    describe it (`about`)."""

    query: dict[str, Any]
    about: dict[str, Any]


async def _published(
    resources: ResourceActivities, principal: Principal, name: str, business_line: str | None
) -> _Published:
    """The newest published segments of the segment's line, its time zone, and now."""
    head = await resource_head(resources, principal, "Segment", name, business_line)
    line = head.business_line
    segments = {row.name: row.document["spec"] for row in await resources.latest("Segment", line)}
    policies = await resources.latest("ContactPolicy", line)
    timezone = policies[0].document["spec"].get("timezone") if policies else None
    now = datetime.now(UTC)
    return _Published(
        query={
            "business_line": line,
            "segment": name,
            "segments": segments,
            "at": now,
            "timezone": timezone or DEFAULT_TIMEZONE,
        },
        about={"segment": name, "business_line": line, "version": head.latest_version, "at": now},
    )


def _unusable(name: str, error: SegmentError) -> ApiProblem:
    return ApiProblem(422, "invalid-segment", f"segment '{name}' cannot be evaluated: {error}")
