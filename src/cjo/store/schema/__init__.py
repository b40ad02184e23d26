"""Every table, grouped by the resource it serves. Importing this registers them all."""

from cjo.store.schema.audit import AuditEntry
from cjo.store.schema.auth import ApiKey
from cjo.store.schema.goods import BenefitLedger, Grant
from cjo.store.schema.idempotency import IdempotencyRecord
from cjo.store.schema.messaging import ContactLog, DeliveryReceipt, Message
from cjo.store.schema.people import AudienceMember, AudienceSnapshot, Consent, Event, Profile
from cjo.store.schema.resources import Resource, ResourceVersion
from cjo.store.schema.reviews import CampaignApproval
from cjo.store.schema.risk import RiskDecision, RiskListEntry
from cjo.store.schema.runs import ActivityReceipt, Campaign, Enrolment, StepLogEntry

__all__ = [
    "ApiKey",
    "ActivityReceipt",
    "AudienceMember",
    "AudienceSnapshot",
    "AuditEntry",
    "BenefitLedger",
    "Campaign",
    "CampaignApproval",
    "Consent",
    "ContactLog",
    "DeliveryReceipt",
    "Enrolment",
    "Event",
    "Grant",
    "IdempotencyRecord",
    "Message",
    "Profile",
    "Resource",
    "ResourceVersion",
    "RiskDecision",
    "RiskListEntry",
    "StepLogEntry",
]
