"""Reading published resources and their history (`GET /v1/resources...`).

A resource is named by kind, business line and name. The routes under `{kind}/{name}`
take the line as `?business_line=`; without it, the name is looked for among the lines
the caller sees, and must be in exactly one of them. A version is given by its content
hash or by its revision number (1, 2, 3, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cjo.api.auth import Viewer, visible
from cjo.api.deps import ResourcesDep
from cjo.api.paging import Cursor, Limit, decode_cursor, encode_cursor
from cjo.api.problems import not_found, problem_responses
from cjo.api.routes._resources import LineQuery, resource_head
from cjo.control.resource_diff import PathChange, changed_paths, unified_diff
from cjo.control.resources import ResourceActivities
from cjo.store.schema import Resource, ResourceVersion

router = APIRouter(prefix="/v1/resources", tags=["resources"])
Kind = Literal["Journey", "Segment", "Benefit", "Template", "RiskPolicy", "ContactPolicy"]
KindPath = Annotated[Kind, Path(description="the resource's kind")]
NamePath = Annotated[str, Path(min_length=1, max_length=64)]
VersionRef = Annotated[str, Path(min_length=1, max_length=32, description="hash or revision")]
_READ_PROBLEMS = problem_responses(401, 403, 404, 422)
_SEGMENT_DOCUMENT: dict[str, Any] = {
    "apiVersion": "cjo/v1",
    "kind": "Segment",
    "metadata": {"name": "big-savers", "businessLine": "retail"},
    "spec": {"match": {"all": [{"attr": "aum", "gte": 50000}]}},
}


_NAMED_EXAMPLE: dict[str, Any] = {
    "kind": "Segment",
    "business_line": "retail",
    "name": "big-savers",
}
_RESOURCE_EXAMPLE: dict[str, Any] = {
    **_NAMED_EXAMPLE,
    "latest_version": "5b0e1c7d9a2f3e41",
    "revisions": 2,
    "created_at": "2026-11-20T08:00:00Z",
    "updated_at": "2026-11-20T08:00:00Z",
}
_NEWEST_EXAMPLE: dict[str, Any] = {
    "version": "5b0e1c7d9a2f3e41",
    "revision": 2,
    "latest": True,
    "created_by": "key_1a2b3c4d5e6f7a8b",
    "created_at": "2026-11-20T08:00:00Z",
}
_FIRST_EXAMPLE: dict[str, Any] = {
    "version": "1d2c3b4a5f6e7d80",
    "revision": 1,
    "latest": False,
    "created_by": "key_1a2b3c4d5e6f7a8b",
    "created_at": "2026-11-02T08:00:00Z",
}


class _Named(BaseModel):
    """A resource's name: its kind, business line and name."""

    kind: str
    business_line: str
    name: str


class ResourceOut(_Named):
    """A resource's head: its newest version and how many it has had."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESOURCE_EXAMPLE]})

    latest_version: str
    revisions: int
    created_at: datetime | None
    updated_at: datetime | None


class ResourcesPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_RESOURCE_EXAMPLE], "next_cursor": "eyJraW5kIjoiU2VnbWVudCJ9"}]
        }
    )

    items: list[ResourceOut]
    next_cursor: str | None


class VersionSummary(BaseModel):
    version: str
    revision: int
    latest: bool
    created_by: str | None
    created_at: datetime | None


class VersionsPage(_Named):
    """Newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_NAMED_EXAMPLE,
                    "items": [_NEWEST_EXAMPLE, _FIRST_EXAMPLE],
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[VersionSummary]
    next_cursor: str | None


class VersionOut(_Named):
    """One version: the normalised document, a journey's compiled Plan, the source text."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_NAMED_EXAMPLE,
                    **_NEWEST_EXAMPLE,
                    "document": _SEGMENT_DOCUMENT,
                    "plan": None,
                    "source": "apiVersion: cjo/v1\nkind: Segment\n...",
                }
            ]
        }
    )

    version: str
    revision: int
    latest: bool
    document: dict[str, Any]
    plan: dict[str, Any] | None
    source: str | None
    created_by: str | None
    created_at: datetime | None


class DiffSide(BaseModel):
    version: str
    revision: int


class DiffOut(_Named):
    """`unified`: a unified diff of the two documents' canonical YAML; `changes`: each
    changed path, with the value before and after."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_NAMED_EXAMPLE,
                    "from": {"version": "1d2c3b4a5f6e7d80", "revision": 1},
                    "to": {"version": "5b0e1c7d9a2f3e41", "revision": 2},
                    "unified": "--- big-savers@1\n+++ big-savers@2\n@@ -7,7 +7,7 @@\n"
                    "     all:\n     - attr: aum\n-      gte: 50000\n+      gte: 80000\n",
                    "changes": [
                        {
                            "path": "spec.match.all[0].gte",
                            "op": "changed",
                            "before": 50000,
                            "after": 80000,
                        }
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    # `from` is a keyword in Python: the field is `from_`, its JSON name `from`.
    from_: DiffSide = Field(alias="from")
    to: DiffSide
    unified: str
    changes: list[PathChange]


class _HeadPosition(BaseModel):
    kind: str
    business_line: str
    name: str


class _VersionPosition(BaseModel):
    revision: int


@router.get("", responses=_READ_PROBLEMS, summary="List published resources")
async def list_resources(
    principal: Viewer,
    resources: ResourcesDep,
    kind: Annotated[Kind | None, Query()] = None,
    business_line: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ResourcesPage:
    """Published resources of the caller's business lines, by kind, line and name."""
    if business_line is not None:
        visible(principal, business_line, "business line", business_line)
    after = decode_cursor(cursor, _HeadPosition)
    heads = await resources.heads(
        kind=kind,
        business_line=business_line,
        business_lines=None if principal.sees_all else principal.business_lines,
        after=(after.kind, after.business_line, after.name) if after else None,
        limit=limit + 1,
    )
    page, more = heads[:limit], len(heads) > limit
    last = page[-1] if more else None
    position = None
    if last is not None:
        position = _HeadPosition(kind=last.kind, business_line=last.business_line, name=last.name)
    return ResourcesPage(
        items=[ResourceOut.model_validate(head, from_attributes=True) for head in page],
        next_cursor=encode_cursor(position),
    )


Head = Callable[[], Awaitable[Resource]]


def _head_named(
    kind: KindPath,
    name: NamePath,
    principal: Viewer,
    resources: ResourcesDep,
    business_line: LineQuery = None,
) -> Head:
    """How to find the head of the resource the path names, as the caller may see it: the
    route looks once its own parameters are valid (a bad one is a 422 before any 404)."""
    return partial(resource_head, resources, principal, kind, name, business_line)


HeadDep = Annotated[Head, Depends(_head_named)]


@router.get("/{kind}/{name}", responses=_READ_PROBLEMS, summary="Get a resource's newest version")
async def get_resource(find_head: HeadDep, resources: ResourcesDep) -> VersionOut:
    """The newest version of a resource."""
    head = await find_head()
    return _version_out(VersionOut, await _newest(resources, head), head)


@router.get(
    "/{kind}/{name}/versions", responses=_READ_PROBLEMS, summary="List a resource's versions"
)
async def list_versions(
    find_head: HeadDep, resources: ResourcesDep, limit: Limit = 50, cursor: Cursor = None
) -> VersionsPage:
    """Every version of a resource, newest first."""
    head = await find_head()
    after = decode_cursor(cursor, _VersionPosition)
    rows = await resources.version_page(
        head.kind,
        head.business_line,
        head.name,
        before_revision=after.revision if after else None,
        limit=limit + 1,
    )
    page, more = rows[:limit], len(rows) > limit
    return VersionsPage(
        kind=head.kind,
        business_line=head.business_line,
        name=head.name,
        items=[_version_out(VersionSummary, row, head) for row in page],
        next_cursor=encode_cursor(_VersionPosition(revision=page[-1].revision) if more else None),
    )


@router.get(
    "/{kind}/{name}/versions/{version}",
    responses=_READ_PROBLEMS,
    summary="Get one version of a resource",
)
async def get_version(
    find_head: HeadDep, version: VersionRef, resources: ResourcesDep
) -> VersionOut:
    """One version of a resource, by content hash or revision number."""
    head = await find_head()
    return _version_out(VersionOut, await _version(resources, head, version), head)


@router.get(
    "/{kind}/{name}/diff", responses=_READ_PROBLEMS, summary="Diff two versions of a resource"
)
async def diff_versions(
    find_head: HeadDep,
    resources: ResourcesDep,
    from_: Annotated[
        str,
        Query(alias="from", min_length=1, max_length=32, description="hash or revision"),
    ],
    to: Annotated[
        str | None,
        Query(min_length=1, max_length=32, description="hash or revision; default: newest"),
    ] = None,
) -> DiffOut:
    """What changed from one version to another: a unified diff of their canonical YAML
    and the list of changed paths."""
    head = await find_head()
    before = await _version(resources, head, from_)
    after = await _version(resources, head, to) if to else await _newest(resources, head)

    def label(row: ResourceVersion) -> str:
        return f"{head.name}@{row.revision} ({row.version})"

    return DiffOut(
        kind=head.kind,
        business_line=head.business_line,
        name=head.name,
        from_=DiffSide(version=before.version, revision=before.revision),
        to=DiffSide(version=after.version, revision=after.revision),
        unified=unified_diff(before.document, after.document, label(before), label(after)),
        changes=changed_paths(before.document, after.document),
    )


async def _newest(resources: ResourceActivities, head: Resource) -> ResourceVersion:
    found = await resources.get(head.kind, head.business_line, head.name, head.latest_version)
    if found is None:
        raise not_found(f"no {head.kind} {head.name}")
    return found


async def _version(resources: ResourceActivities, head: Resource, ref: str) -> ResourceVersion:
    """A version by content hash, or by revision number when `ref` is all digits."""
    if ref.isdigit():
        found = await resources.by_revision(head.kind, head.business_line, head.name, int(ref))
    else:
        found = await resources.get(head.kind, head.business_line, head.name, ref)
    if found is None:
        raise not_found(f"{head.kind} {head.name} has no version {ref}")
    return found


Out = TypeVar("Out", VersionOut, VersionSummary)


def _version_out(model: type[Out], row: ResourceVersion, head: Resource) -> Out:
    return model.model_validate({**row.model_dump(), "latest": row.version == head.latest_version})
