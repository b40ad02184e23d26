"""Segments (people): count, sample, membership and snapshots, each one SQL statement.

A segment is translated to a single predicate over `profiles` (see `_segment_sql`), so the
database does the work; no activity here loads the population into the program.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlmodel import SQLModel
from temporalio import activity

from cjo.activities._base import utc
from cjo.activities.people._segment_sql import (
    PROFILES,
    InvalidConditionError,
    Predicate,
    SegmentCycleError,
    SegmentError,
    SegmentResolver,
    UnknownSegmentError,
    named_segment_filter,
    segment_filter,
)
from cjo.dsl import SegmentSpec
from cjo.runtime.log import mask
from cjo.steps.contracts import CheckMembershipInput, CheckMembershipResult, SegmentQuery
from cjo.store.db import SessionFactory, reading, transaction
from cjo.store.schema import AudienceMember, AudienceSnapshot

__all__ = [
    "CountSegmentInput",
    "CountSegmentResult",
    "InvalidConditionError",
    "SampleSegmentInput",
    "SampleSegmentResult",
    "SampledMember",
    "SegmentActivities",
    "SegmentCycleError",
    "SegmentError",
    "SnapshotSegmentInput",
    "SnapshotSegmentResult",
    "UnknownSegmentError",
    "segment_filter",
    "segment_resolver",
]

SNAPSHOTS: sa.Table = SQLModel.metadata.tables[str(AudienceSnapshot.__tablename__)]
MEMBERS: sa.Table = SQLModel.metadata.tables[str(AudienceMember.__tablename__)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CountSegmentInput(SegmentQuery):
    pass


class CountSegmentResult(_Model):
    count: int


class SampleSegmentInput(SegmentQuery):
    size: int = Field(default=20, ge=1, le=1000)


class SampledMember(_Model):
    id: str
    name: str | None
    phone: str | None
    email: str | None
    lifecycle: str
    tags: list[str]


class SampleSegmentResult(_Model):
    members: list[SampledMember]


class SnapshotSegmentInput(SegmentQuery):
    snapshot_id: str = Field(min_length=1, max_length=64)
    segment_version: str = Field(default="", max_length=32)


class SnapshotSegmentResult(_Model):
    snapshot_id: str
    size: int


def segment_resolver(specs: dict[str, dict[str, Any]]) -> SegmentResolver:
    """A resolver over specs in DSL form: an unknown name raises KeyError (a LookupError)."""
    parsed: dict[str, SegmentSpec] = {}

    def resolve(name: str) -> SegmentSpec:
        if name not in parsed:
            try:
                parsed[name] = SegmentSpec.model_validate(specs[name])
            except ValidationError as error:
                raise InvalidConditionError(
                    f"segment '{name}' is not a valid spec: {error}"
                ) from None
        return parsed[name]

    return resolve


def _filter(query: SegmentQuery) -> Predicate:
    resolve = segment_resolver(query.segments)
    return named_segment_filter(
        query.segment, now=query.at, timezone=query.timezone, resolve=resolve
    )


def _mask_name(name: str) -> str:
    """张三 → 张*, 王小明 → 王*明: enough to recognise a record, not to identify a person."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _mask_contact(value: str) -> str:
    """The logger's masking; values its patterns miss (a foreign phone) keep only their ends."""
    masked = mask(value)
    if masked != value:
        return masked
    keep = len(value) // 5
    if keep == 0:
        return "*" * len(value)
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


class SegmentActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="segments.count")
    async def count(self, request: CountSegmentInput) -> CountSegmentResult:
        statement = sa.select(sa.func.count()).select_from(PROFILES).where(_filter(request))
        async with reading(self._sessions) as connection:
            total = (await connection.execute(statement)).scalar_one()
        return CountSegmentResult(count=total)

    @activity.defn(name="segments.sample")
    async def sample(self, request: SampleSegmentInput) -> SampleSegmentResult:
        """A spread of members (ordered by a hash of the id, not alphabetically), PII masked."""
        columns = [PROFILES.c[name] for name in ("id", "name", "phone", "email", "lifecycle")]
        statement = (
            sa.select(*columns, PROFILES.c.tags)
            .where(_filter(request))
            .order_by(sa.func.md5(PROFILES.c.id), PROFILES.c.id)
            .limit(request.size)
        )
        async with reading(self._sessions) as connection:
            rows = (await connection.execute(statement)).all()
        members = [
            SampledMember(
                id=row.id,
                name=_mask_name(row.name) if row.name else None,
                phone=_mask_contact(row.phone) if row.phone else None,
                email=_mask_contact(row.email) if row.email else None,
                lifecycle=row.lifecycle,
                tags=list(row.tags),
            )
            for row in rows
        ]
        return SampleSegmentResult(members=members)

    @activity.defn(name="segments.check_membership")
    async def check_membership(self, request: CheckMembershipInput) -> CheckMembershipResult:
        if not request.user_ids:
            return CheckMembershipResult(members=[])
        ids = sa.literal(sorted(set(request.user_ids)), ARRAY(sa.Text))
        statement = sa.select(PROFILES.c.id).where(PROFILES.c.id == sa.any_(ids), _filter(request))
        async with reading(self._sessions) as connection:
            found = set((await connection.execute(statement)).scalars())
        return CheckMembershipResult(members=[user in found for user in request.user_ids])

    @activity.defn(name="segments.snapshot")
    async def snapshot(self, request: SnapshotSegmentInput) -> SnapshotSegmentResult:
        """Store the members under `snapshot_id`; the same id again returns the first size."""
        predicate = _filter(request)
        async with transaction(self._sessions) as connection:
            created = await connection.execute(
                insert(SNAPSHOTS)
                .values(
                    id=request.snapshot_id,
                    business_line=request.business_line,
                    segment=request.segment,
                    segment_version=request.segment_version,
                    size=0,
                    created_at=utc(request.at),
                )
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(SNAPSHOTS.c.id)
            )
            if created.first() is None:
                # Taken before (or by a concurrent twin, whose commit this insert waited for).
                size = await connection.execute(
                    sa.select(SNAPSHOTS.c.size).where(SNAPSHOTS.c.id == request.snapshot_id)
                )
                return SnapshotSegmentResult(
                    snapshot_id=request.snapshot_id, size=size.scalar_one()
                )
            members = sa.select(sa.literal(request.snapshot_id), PROFILES.c.id).where(predicate)
            added = (
                MEMBERS.insert()
                .from_select(["audience_id", "user_id"], members)
                .returning(MEMBERS.c.user_id)
                .cte("added")
            )
            # One statement: the members go in and only their count comes back out.
            sized = await connection.execute(
                SNAPSHOTS.update()
                .add_cte(added)
                .where(SNAPSHOTS.c.id == request.snapshot_id)
                .values(size=sa.select(sa.func.count()).select_from(added).scalar_subquery())
                .returning(SNAPSHOTS.c.size)
            )
            size_value = sized.scalar_one()
        return SnapshotSegmentResult(snapshot_id=request.snapshot_id, size=size_value)
