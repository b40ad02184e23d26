"""What the routes that name a published resource (`resource_reads`, `segments`,
`benefits`) share: its business line as a query, and finding its head as the caller may
see it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from cjo.api.auth import Principal, visible
from cjo.api.problems import ApiProblem, not_found
from cjo.control.resources import ResourceActivities
from cjo.store.schema import Resource

LineQuery = Annotated[
    str | None,
    Query(max_length=64, description="the business line; optional when the name is in one"),
]


async def resource_head(
    resources: ResourceActivities,
    principal: Principal,
    kind: str,
    name: str,
    business_line: str | None,
) -> Resource:
    """The resource's head in the given (or the only visible) business line, else 404."""
    missing = f"no {kind} {name}"
    if business_line is not None:
        visible(principal, business_line, kind, name)
    heads = await resources.heads(
        kind=kind,
        name=name,
        business_line=business_line,
        business_lines=None if principal.sees_all else principal.business_lines,
        limit=100,
    )
    if not heads:
        raise not_found(missing if business_line is None else f"{missing} in {business_line}")
    if len(heads) > 1:
        lines = ", ".join(head.business_line for head in heads)
        raise ApiProblem(
            422,
            "ambiguous-resource",
            f"{kind} {name} is published in several business lines ({lines}); "
            "name one with ?business_line=",
        )
    return heads[0]
