"""Provider callbacks (`/v1/channels`): delivery receipts and inbound SMS replies.

No API key protects these: providers sign each callback with their secret
(`X-CJO-Timestamp`, `X-CJO-Signature: sha256=<hex of HMAC over "<ts>.<raw body>">`),
and a callback without a valid, fresh signature is answered 401 before its body is read
as JSON. `?business_line=` names whose provider is calling (default `*`, the provider
shared by every line): its secret for the channel checks the signature, and its reports
count only for messages it delivers (see `cjo.delivery.receipts`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cjo.api._limits import MAX_BATCH
from cjo.api.deps import OptionalRoutingDep, RoutingDep, SessionsDep, StateDep
from cjo.api.problems import ApiProblem, problem_responses, too_large
from cjo.delivery.feedback import DeliveryFeedback, DeliveryReport, report_time
from cjo.delivery.receipts import ProviderReceipts, ProviderReportsInput
from cjo.delivery.replies import RecordRepliesInput, SmsReplies, SmsReply
from cjo.delivery.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from cjo.runtime.settings import ANY_BUSINESS_LINE, Channel, Settings

router = APIRouter(prefix="/v1/channels", tags=["channels"])
Body = TypeVar("Body", bound=BaseModel)
BusinessLineQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        description="whose provider is calling: its secret checks the signature",
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ReceiptIn(_In):
    message_id: str = Field(min_length=1, max_length=64)
    status: Literal["delivered", "failed", "opened", "clicked"]
    at: AwareDatetime | None = Field(default=None, description="when it happened; default: now")
    provider_ref: str | None = Field(default=None, max_length=128)
    report_id: str | None = Field(
        default=None,
        max_length=128,
        description="the provider's id of this report: two clicks are two reports",
    )
    detail: dict[str, Any] = Field(default_factory=dict)


class ReceiptBatch(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reports": [
                        {
                            "message_id": "m-7c2e9a41d0b3",
                            "status": "delivered",
                            "at": "2026-11-26T09:00:05Z",
                            "provider_ref": "smsgw-88213",
                            "report_id": "dlr-88213-1",
                        },
                        {
                            "message_id": "m-3f81b07e5a2c",
                            "status": "failed",
                            "detail": {"code": "UNDELIVERABLE"},
                        },
                    ]
                }
            ]
        }
    )

    reports: list[ReceiptIn]


class ReceiptsOut(BaseModel):
    """`unknown`: ids of no message, or of a message not this provider's on this channel."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"recorded": 2, "duplicates": 0, "unknown": 0, "events": 2}]
        }
    )

    recorded: int
    duplicates: int
    unknown: int
    events: int


class ReplyIn(_In):
    from_: str = Field(alias="from", min_length=1, max_length=32, description="sender's phone")
    text: str = Field(max_length=1600)
    at: AwareDatetime | None = Field(default=None, description="when it arrived; default: now")
    id: str | None = Field(default=None, min_length=1, max_length=128)


class ReplyBatch(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "replies": [
                        {"from": "13800000001", "text": "TD", "at": "2026-11-26T10:02:00Z"},
                        {"from": "13900000002", "text": "好的，谢谢", "id": "mo-55120"},
                    ]
                }
            ]
        }
    )

    replies: list[ReplyIn]


class RepliesOut(BaseModel):
    """`opt_outs`: replies that were an opt-out keyword; `revoked`: users whose SMS consent
    they withdrew; `unmatched`: replies from a number no profile has."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"received": 2, "opt_outs": 1, "revoked": 1, "unmatched": 0}]
        }
    )

    received: int
    opt_outs: int
    revoked: int
    unmatched: int


def _body_of(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (after the signature)."""
    schema = model.model_json_schema(by_alias=True)
    # `$defs` refs would resolve against the whole OpenAPI document: put them in place.
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {
        "requestBody": {"required": True, "content": content},
        "parameters": _SIGNATURE_PARAMETERS,
    }


# Read by `_signed_body`, not by FastAPI: listed here so that the document names them.
_SIGNATURE_PARAMETERS = [
    {
        "name": TIMESTAMP_HEADER,
        "in": "header",
        "required": True,
        "description": "Unix seconds when the provider signed the callback (at most 5 minutes old)",
        "schema": {"type": "string"},
        "example": "1795683605",
    },
    {
        "name": SIGNATURE_HEADER,
        "in": "header",
        "required": True,
        "description": "`sha256=` and the hex HMAC-SHA256, keyed with the provider's secret, "
        "of `<timestamp>.<raw body>`",
        "schema": {"type": "string"},
        "example": "sha256=5d41402abc4b2a76b9719d911017c592f1b3a8e0c4d5e6f708192a3b4c5d6e7f",
    },
]


async def _signed_body(
    request: Request, settings: Settings, business_line: str, channel: str
) -> tuple[bytes, str]:
    """The raw body once its signature checks out, and the secret that signed it."""
    provider = settings.provider(business_line, channel)
    if provider is None or provider.secret is None:
        raise ApiProblem(
            401,
            "invalid-signature",
            f"no provider with a secret is configured for {channel}"
            f" (business line {business_line!r}): its callbacks cannot be verified",
        )
    secret = provider.secret.get_secret_value()
    body = await request.body()
    signed = verify(
        secret,
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        signature=request.headers.get(SIGNATURE_HEADER),
        body=body,
        now=time.time(),
    )
    if not signed:
        raise ApiProblem(
            401,
            "invalid-signature",
            f"missing, wrong or stale {SIGNATURE_HEADER} / {TIMESTAMP_HEADER}",
        )
    return body, secret


def _parse(model: type[Body], body: bytes) -> Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
        ) from None


@router.post(
    "/{channel}/receipts",
    summary="Receive delivery reports (provider callback)",
    openapi_extra=_body_of(ReceiptBatch),
    responses=problem_responses(401, 413, 422, 503),
)
async def post_receipts(
    channel: Annotated[Channel, Path()],
    request: Request,
    state: StateDep,
    sessions: SessionsDep,
    routing: RoutingDep,
    business_line: BusinessLineQuery = ANY_BUSINESS_LINE,
) -> ReceiptsOut:
    """Delivery reports of up to 1,000 messages: each stored once, and each new
    delivered/failed/opened/clicked becomes a `message_<status>` event for the journeys.

    Reports about messages of another channel, or of a business line this provider does
    not serve, count as unknown and change nothing.
    """
    body, secret = await _signed_body(request, state.settings, business_line, channel)
    batch = _parse(ReceiptBatch, body)
    if len(batch.reports) > MAX_BATCH:
        raise too_large(f"{len(batch.reports)} reports; the limit is {MAX_BATCH} a request")
    now = datetime.now(UTC)
    reports = [
        DeliveryReport(
            message_id=r.message_id,
            status=r.status,
            at=report_time(r.at, now),
            provider_ref=r.provider_ref,
            report_id=r.report_id,
            detail=r.detail,
        )
        for r in batch.reports
    ]

    def serves(line: str) -> bool:
        # Whoever holds this secret is the provider of the lines configured with it.
        provider = state.settings.provider(line, channel)
        return (
            provider is not None
            and provider.secret is not None
            and (provider.secret.get_secret_value() == secret)
        )

    receipts = ProviderReceipts(sessions, DeliveryFeedback(sessions, routing), serves)
    result = await receipts.record(ProviderReportsInput(channel=channel, reports=reports))
    return ReceiptsOut(
        recorded=result.recorded,
        duplicates=result.duplicates,
        unknown=len(result.unknown_message_ids),
        events=result.events,
    )


@router.post(
    "/sms/replies",
    summary="Receive inbound SMS replies (provider callback)",
    openapi_extra=_body_of(ReplyBatch),
    responses=problem_responses(401, 413, 422),
)
async def post_sms_replies(
    request: Request,
    state: StateDep,
    sessions: SessionsDep,
    routing: OptionalRoutingDep,
    business_line: BusinessLineQuery = ANY_BUSINESS_LINE,
) -> RepliesOut:
    """Inbound SMS, up to 1,000. A reply that is an opt-out keyword (whole text, any case:
    by default R, TD, 退订, STOP) withdraws SMS marketing consent of every profile with
    that phone at once, with source `sms_reply`; every reply becomes an `sms_replied` event.

    Consent is withdrawn even while Temporal is away (the events are then stored only).
    """
    body, _ = await _signed_body(request, state.settings, business_line, "sms")
    batch = _parse(ReplyBatch, body)
    if len(batch.replies) > MAX_BATCH:
        raise too_large(f"{len(batch.replies)} replies; the limit is {MAX_BATCH} a request")
    now = datetime.now(UTC)
    replies = [
        # A provider's clock ahead of ours must not date an opt-out into the future, where
        # it would outrank the customer's next consent.
        SmsReply(phone=r.from_, text=r.text, at=min(r.at or now, now), id=r.id)
        for r in batch.replies
    ]
    handler = SmsReplies(sessions, routing)
    result = await handler.record(
        RecordRepliesInput(replies=replies, keywords=state.settings.opt_out_keywords)
    )
    return RepliesOut(
        received=len(replies),
        opt_outs=sum(outcome.keyword is not None for outcome in result.results),
        revoked=len({user for outcome in result.results for user in outcome.revoked}),
        unmatched=sum(not outcome.user_ids for outcome in result.results),
    )
