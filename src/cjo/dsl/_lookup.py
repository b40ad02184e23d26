"""Where references go when the bundle does not have them.

A reference resolves first inside the file being validated, then among the
resources already published for the same business line, through
`ResourceLookup`. The store backs it with the database; `InMemoryLookup`
serves the CLI and the tests. Registered `call` activities are part of the
same interface, because the validator checks `call` steps against them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from cjo.dsl._documents import Envelope


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:16]


def resource_body(document: Envelope) -> dict[str, Any]:
    """What a resource means: kind, business line, name, title, labels and spec, normalised."""
    return {
        "kind": getattr(document, "kind"),  # noqa: B009 - every concrete envelope has one
        "business_line": document.business_line,
        "name": document.name,
        "title": document.metadata.title,
        "labels": dict(document.metadata.labels),
        "spec": getattr(document, "spec").model_dump(  # noqa: B009
            mode="json", by_alias=True, exclude_none=True
        ),
    }


def resource_version(document: Envelope) -> str:
    return content_hash(resource_body(document))


@dataclass(frozen=True, slots=True)
class PublishedResource:
    """A resource as published: its typed document and the version it was stored under."""

    document: Envelope
    version: str

    @property
    def kind(self) -> str:
        return str(getattr(self.document, "kind"))  # noqa: B009

    @property
    def name(self) -> str:
        return self.document.name

    @property
    def business_line(self) -> str:
        return self.document.business_line


@dataclass(frozen=True, slots=True)
class ActivityDeclaration:
    """What the validator needs to know of a registered `call` activity."""

    name: str
    params: type[BaseModel]
    outcomes: tuple[str, ...] = ("ok",)
    description: str = ""


class ResourceLookup(Protocol):
    def resource(self, kind: str, business_line: str, name: str) -> PublishedResource | None: ...

    def names(self, kind: str, business_line: str) -> Sequence[str]: ...

    def activity(self, name: str) -> ActivityDeclaration | None: ...

    def activity_names(self) -> Sequence[str]: ...


@dataclass
class InMemoryLookup:
    """A lookup held in memory: published resources and registered activities."""

    _resources: dict[tuple[str, str, str], PublishedResource] = field(default_factory=dict)
    _activities: dict[str, ActivityDeclaration] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        documents: Iterable[Envelope] = (),
        activities: Iterable[ActivityDeclaration] = (),
    ) -> InMemoryLookup:
        lookup = cls()
        for document in documents:
            lookup.publish(document)
        for declaration in activities:
            lookup.register_activity(declaration)
        return lookup

    def publish(self, document: Envelope) -> PublishedResource:
        published = PublishedResource(document, resource_version(document))
        self._resources[(published.kind, published.business_line, published.name)] = published
        return published

    def register_activity(self, declaration: ActivityDeclaration) -> None:
        self._activities[declaration.name] = declaration

    def resource(self, kind: str, business_line: str, name: str) -> PublishedResource | None:
        return self._resources.get((kind, business_line, name))

    def names(self, kind: str, business_line: str) -> Sequence[str]:
        return sorted(n for (k, bl, n) in self._resources if k == kind and bl == business_line)

    def activity(self, name: str) -> ActivityDeclaration | None:
        return self._activities.get(name)

    def activity_names(self) -> Sequence[str]:
        return sorted(self._activities)
