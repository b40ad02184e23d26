"""Publishing resources: apply a YAML bundle as new versions, and read them back.

Each document of a bundle that validates becomes a new version of its resource unless
its content is unchanged (the version is the content hash, so "unchanged" is exact).
Journeys are stored with their compiled Plan. Published resources back the DSL's
reference lookup: a bundle may refer to segments, templates and the like published
earlier for the same business line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import and_, literal, tuple_
from sqlmodel import col
from sqlmodel import select as sqlmodel_select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from cjo.activities._base import lock
from cjo.activities.calls.registry import ActivityRegistry
from cjo.dsl import (
    DOCUMENT_ADAPTER,
    Diagnostic,
    Envelope,
    InMemoryLookup,
    Plan,
    ValidationResult,
    compile_validated,
    resource_version,
    validate,
)
from cjo.store.db import SessionFactory
from cjo.store.schema import Resource, ResourceVersion

Row = TypeVar("Row", Resource, ResourceVersion)


@dataclass(frozen=True, slots=True)
class AppliedResource:
    kind: str
    business_line: str
    name: str
    version: str
    revision: int
    changed: bool


@dataclass(frozen=True, slots=True)
class CheckedBundle:
    """A bundle validated once, against the lookup loaded for it (`result.bundle.lookup`):
    what `apply_checked` publishes, without loading or validating it again."""

    text: str | bytes
    result: ValidationResult

    @property
    def business_lines(self) -> list[str]:
        """The business lines of its documents (those that passed their schema), sorted."""
        return sorted({document.business_line for document in self.result.documents})


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What `apply` did: the documents applied, or the diagnostics that stopped it."""

    applied: list[AppliedResource] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def document_json(document: Envelope) -> dict[str, Any]:
    """The normalised document, in the DSL's own spelling, as stored and read back."""
    return dict(document.model_dump(mode="json", by_alias=True, exclude_none=True))


class ResourceActivities:
    """Apply bundles and read published resources, on the database."""

    def __init__(self, sessions: SessionFactory, registry: ActivityRegistry) -> None:
        self._sessions = sessions
        self._registry = registry

    async def lookup(self) -> InMemoryLookup:
        """Every resource's newest version (journeys aside), with the registered activities."""
        lookup = InMemoryLookup.of(activities=self._registry.declarations())
        for stored in await self._all(_newest().where(col(ResourceVersion.kind) != "Journey")):
            lookup.publish(DOCUMENT_ADAPTER.validate_python(stored.document))
        return lookup

    async def check(self, text: str | bytes, file: str = "<bundle>") -> CheckedBundle:
        """Validate a bundle against what is published now (one lookup, one validation)."""
        return CheckedBundle(text, validate(text, file, await self.lookup()))

    async def apply(
        self, text: str | bytes, *, file: str = "<bundle>", actor: str | None = None
    ) -> ApplyOutcome:
        """Validate, compile and store a bundle: all of it, or (with errors) nothing."""
        return await self.apply_checked(await self.check(text, file), actor=actor)

    async def apply_checked(
        self, checked: CheckedBundle, *, actor: str | None = None
    ) -> ApplyOutcome:
        """Compile and store a bundle `check` validated: all of it, or (with errors) nothing."""
        result = checked.result
        if not result.valid:
            return ApplyOutcome(diagnostics=result.diagnostics)
        plans = compile_validated(result).plans
        text = checked.text
        source = text.decode("utf-8") if isinstance(text, bytes) else text
        lines = source.splitlines(keepends=True)
        applied: list[AppliedResource] = []
        async with self._sessions() as session, session.begin():
            for entry in result.bundle.entries:
                start = entry.source.source.get(())
                excerpt = "".join(lines[start.line - 1 : start.end_line]) if start else None
                plan = plans.get(entry.model.name) if entry.kind == "Journey" else None
                applied.append(await _store(session, entry.model, plan, excerpt, actor))
        return ApplyOutcome(applied=applied, diagnostics=result.diagnostics)

    async def versions(self, kind: str, business_line: str, name: str) -> list[ResourceVersion]:
        """Every stored version of a resource, oldest first."""
        query = _versions_of(kind, business_line, name)
        return await self._all(query.order_by(col(ResourceVersion.revision)))

    async def heads(
        self,
        *,
        kind: str | None = None,
        business_line: str | None = None,
        business_lines: frozenset[str] | None = None,
        name: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 50,
    ) -> list[Resource]:
        """Resources (their heads) by kind, business line and name; `business_lines` (None:
        every line) bounds what is seen, `after` is the (kind, line, name) a page ended at."""
        query = sqlmodel_select(Resource)
        if kind is not None:
            query = query.where(col(Resource.kind) == kind)
        if business_line is not None:
            query = query.where(col(Resource.business_line) == business_line)
        if business_lines is not None:
            query = query.where(col(Resource.business_line).in_(sorted(business_lines)))
        if name is not None:
            query = query.where(col(Resource.name) == name)
        if after is not None:
            query = query.where(
                tuple_(col(Resource.kind), col(Resource.business_line), col(Resource.name))
                > tuple_(*(literal(part) for part in after))
            )
        query = query.order_by(
            col(Resource.kind), col(Resource.business_line), col(Resource.name)
        ).limit(limit)
        return await self._all(query)

    async def latest(self, kind: str, business_line: str) -> list[ResourceVersion]:
        """The newest version of every resource of `kind` in the business line."""
        return await self._all(
            _newest().where(
                col(ResourceVersion.kind) == kind,
                col(ResourceVersion.business_line) == business_line,
            )
        )

    async def version_page(
        self,
        kind: str,
        business_line: str,
        name: str,
        *,
        before_revision: int | None = None,
        limit: int = 50,
    ) -> list[ResourceVersion]:
        """A resource's versions, newest first, from before `before_revision`."""
        query = _versions_of(kind, business_line, name)
        if before_revision is not None:
            query = query.where(col(ResourceVersion.revision) < before_revision)
        return await self._all(query.order_by(col(ResourceVersion.revision).desc()).limit(limit))

    async def by_revision(
        self, kind: str, business_line: str, name: str, revision: int
    ) -> ResourceVersion | None:
        query = _versions_of(kind, business_line, name)
        found = await self._all(query.where(col(ResourceVersion.revision) == revision))
        return found[0] if found else None

    async def get(
        self, kind: str, business_line: str, name: str, version: str | None = None
    ) -> ResourceVersion | None:
        """A resource's version (default: the newest)."""
        async with self._sessions() as session:
            if version is None:
                head = await session.get(Resource, (kind, business_line, name))
                if head is None:
                    return None
                version = head.latest_version
            return await session.get(ResourceVersion, (kind, business_line, name, version))

    async def journey_plan(
        self, business_line: str, name: str, version: str | None = None
    ) -> Plan | None:
        stored = await self.get("Journey", business_line, name, version)
        if stored is None or stored.plan is None:
            return None
        return Plan.model_validate(stored.plan)

    async def _all(self, query: SelectOfScalar[Row]) -> list[Row]:
        async with self._sessions() as session:
            return list((await session.exec(query)).all())


def _newest() -> SelectOfScalar[ResourceVersion]:
    """Each resource's newest version: the version its head names."""
    return sqlmodel_select(ResourceVersion).join(
        Resource,
        and_(
            col(Resource.kind) == col(ResourceVersion.kind),
            col(Resource.business_line) == col(ResourceVersion.business_line),
            col(Resource.name) == col(ResourceVersion.name),
            col(Resource.latest_version) == col(ResourceVersion.version),
        ),
    )


def _versions_of(kind: str, business_line: str, name: str) -> SelectOfScalar[ResourceVersion]:
    """The stored versions of one resource."""
    return sqlmodel_select(ResourceVersion).where(
        col(ResourceVersion.kind) == kind,
        col(ResourceVersion.business_line) == business_line,
        col(ResourceVersion.name) == name,
    )


async def _store(
    session: AsyncSession,
    document: Envelope,
    plan: Plan | None,
    source: str | None,
    actor: str | None,
) -> AppliedResource:
    kind = str(getattr(document, "kind"))  # noqa: B009
    key = (kind, document.business_line, document.name)
    # A journey's version is its Plan's: it changes when a resource it pins changes too.
    version = plan.version if plan is not None else resource_version(document)
    # Two applies of the same resource at once must not both take the next revision.
    await lock(await session.connection(), [("resource", *key)])
    head = await session.get(Resource, key)
    if head is not None and head.latest_version == version:
        return AppliedResource(*key, version, head.revisions, changed=False)
    known = await session.get(ResourceVersion, (*key, version))
    revision = known.revision if known is not None else (head.revisions + 1 if head else 1)
    if known is None:
        session.add(
            ResourceVersion(
                kind=kind,
                business_line=document.business_line,
                name=document.name,
                version=version,
                revision=revision,
                document=document_json(document),
                plan=plan.model_dump(mode="json") if plan is not None else None,
                source=source,
                created_by=actor,
            )
        )
    if head is None:
        session.add(
            Resource(
                kind=kind,
                business_line=document.business_line,
                name=document.name,
                latest_version=version,
                revisions=revision,
            )
        )
    else:
        # Re-applying an older version makes it the newest again; history is kept.
        head.latest_version = version
        head.revisions = max(head.revisions, revision)
        session.add(head)
    await session.flush()
    return AppliedResource(*key, version, revision, changed=True)
