"""The document envelope shared by every kind, and the union of all kinds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, TypeAdapter

from cjo.dsl._journey import JourneySpec
from cjo.dsl._resources import (
    BenefitSpec,
    ContactPolicySpec,
    RiskPolicySpec,
    SegmentSpec,
    TemplateSpec,
)
from cjo.dsl._types import Name, Strict, tagged_union

API_VERSION = "cjo/v1"
KINDS = ("Journey", "Segment", "Benefit", "Template", "RiskPolicy", "ContactPolicy")
DEFAULT_BUSINESS_LINE = "default"


class Metadata(Strict):
    name: Name
    title: str | None = None
    business_line: Name = Field(default=DEFAULT_BUSINESS_LINE, alias="businessLine")
    labels: dict[str, str] = Field(default_factory=dict)


class Envelope(Strict):
    api_version: Literal["cjo/v1"] = Field(alias="apiVersion")
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def business_line(self) -> str:
        return self.metadata.business_line


class JourneyDocument(Envelope):
    kind: Literal["Journey"]
    spec: JourneySpec


class SegmentDocument(Envelope):
    kind: Literal["Segment"]
    spec: SegmentSpec


class BenefitDocument(Envelope):
    kind: Literal["Benefit"]
    spec: BenefitSpec


class TemplateDocument(Envelope):
    kind: Literal["Template"]
    spec: TemplateSpec


class RiskPolicyDocument(Envelope):
    kind: Literal["RiskPolicy"]
    spec: RiskPolicySpec


class ContactPolicyDocument(Envelope):
    kind: Literal["ContactPolicy"]
    spec: ContactPolicySpec


DOCUMENT_MODELS: dict[str, type[Envelope]] = {
    "Journey": JourneyDocument,
    "Segment": SegmentDocument,
    "Benefit": BenefitDocument,
    "Template": TemplateDocument,
    "RiskPolicy": RiskPolicyDocument,
    "ContactPolicy": ContactPolicyDocument,
}


def _choose_kind(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("kind"), str) and value["kind"] in KINDS:
        return f"kind:{value['kind']}"
    return None


if TYPE_CHECKING:
    AnyDocument = (
        JourneyDocument
        | SegmentDocument
        | BenefitDocument
        | TemplateDocument
        | RiskPolicyDocument
        | ContactPolicyDocument
    )
else:
    AnyDocument = tagged_union(
        {f"kind:{kind}": model for kind, model in DOCUMENT_MODELS.items()},
        _choose_kind,
        error="a document needs a 'kind': one of " + ", ".join(KINDS),
    )
DOCUMENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyDocument)
