"""A user's messages and message centre (`/v1/users/{id}/messages`, `/inbox`).

A principal of some business lines sees only those lines' messages (see `users`): a page
may then hold fewer than `limit` items; follow `next_cursor`. Another line's message
answers 404, as a missing one does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from cjo.api.audit import AuditDep
from cjo.api.auth import Operator, Principal, Viewer
from cjo.api.deps import OptionalRoutingDep, ProfilesDep, SessionsDep
from cjo.api.paging import Cursor, Limit, decode_cursor, encode_cursor
from cjo.api.problems import not_found, problem_responses
from cjo.api.routes._users import UserIdPath, known_profile
from cjo.control.tenancy import Tenancy
from cjo.delivery.feedback import DeliveryFeedback
from cjo.delivery.message_centre import (
    InboxItem,
    InboxPageInput,
    MarkReadInput,
    MessageCentre,
    MessagePosition,
    UserMessage,
    UserMessagesInput,
)
from cjo.runtime.settings import Channel
from cjo.store.db import SessionFactory

router = APIRouter(prefix="/v1/users", tags=["users"])


_INBOX_ITEM_EXAMPLE: dict[str, Any] = {
    "id": "m-7c2e9a41d0b3",
    "journey": "card-activation",
    "step": "welcome_inbox",
    "template": "card-welcome-inbox",
    "subject": "您的新卡已寄出",
    "body": "激活后首笔消费返现 20 元。",
    "html": None,
    "created_at": "2026-11-26T09:00:00Z",
    "sent_at": "2026-11-26T09:00:02Z",
    "read": False,
    "read_at": None,
}
_MESSAGE_EXAMPLE: dict[str, Any] = {
    "id": "m-3f81b07e5a2c",
    "channel": "sms",
    "status": "suppressed",
    "reason": "quiet_hours",
    "marketing": True,
    "template": "card-activation-sms",
    "journey": "card-activation",
    "step": "remind_sms",
    "subject": None,
    "body": None,
    "created_at": "2026-11-26T14:00:00Z",
    "not_before": None,
    "sent_at": None,
    "read_at": None,
}


class InboxOut(BaseModel):
    """`unread`: how many of the user's inbox messages are unread, on every page."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_INBOX_ITEM_EXAMPLE], "next_cursor": None, "unread": 1}]
        }
    )

    items: list[InboxItem]
    next_cursor: str | None
    unread: int


class MessagesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_MESSAGE_EXAMPLE], "next_cursor": None}]}
    )

    items: list[UserMessage]
    next_cursor: str | None


class ReadOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "m-7c2e9a41d0b3", "read": True, "read_at": "2026-11-26T12:30:00Z"}]
        }
    )

    id: str
    read: bool
    read_at: datetime


@router.get(
    "/{user_id}/inbox",
    summary="List a user's message-centre items",
    responses=problem_responses(404, 422),
)
async def get_inbox(
    principal: Viewer,
    user_id: UserIdPath,
    sessions: SessionsDep,
    profiles: ProfilesDep,
    unread: Annotated[bool, Query(description="only unread messages")] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> InboxOut:
    """The user's message-centre items (inbox messages delivered so far), newest first."""
    await known_profile(profiles, user_id)
    page = await MessageCentre(sessions).inbox(
        InboxPageInput(
            user_id=user_id,
            unread_only=unread,
            limit=limit,
            after=decode_cursor(cursor, MessagePosition),
        )
    )
    unread_count = page.unread
    if not principal.sees_all:
        unread_count = await Tenancy(sessions).unread_inbox(user_id, principal.business_lines)
    return InboxOut(
        items=await _seen(sessions, principal, user_id, page.items),
        next_cursor=encode_cursor(page.next),
        unread=unread_count,
    )


@router.post(
    "/{user_id}/inbox/{message_id}/read",
    summary="Mark an inbox message read",
    responses=problem_responses(403, 404, 422),
)
async def read_inbox_message(
    principal: Operator,
    audit: AuditDep,
    user_id: UserIdPath,
    message_id: Annotated[str, Path(min_length=1, max_length=64)],
    sessions: SessionsDep,
    routing: OptionalRoutingDep,
) -> ReadOut:
    """Mark one of the user's inbox messages read; repeating it keeps the first time.

    The first read is the message's `opened` report (a `message_opened` event).
    """
    missing = not_found(f"user {user_id} has no inbox message {message_id}")
    line = (await Tenancy(sessions).message_lines(user_id, [message_id])).get(message_id)
    if line is None or not principal.sees(line):
        raise missing
    audit.target("message", message_id, line)
    centre = MessageCentre(sessions, DeliveryFeedback(sessions, routing))
    result = await centre.mark_read(
        MarkReadInput(user_id=user_id, message_id=message_id, at=datetime.now(UTC))
    )
    if not result.found or result.read_at is None:
        raise missing
    audit.after({"read_at": result.read_at})
    return ReadOut(id=message_id, read=True, read_at=result.read_at)


@router.get(
    "/{user_id}/messages",
    summary="List a user's messages on every channel",
    responses=problem_responses(404, 422),
)
async def get_messages(
    principal: Viewer,
    user_id: UserIdPath,
    sessions: SessionsDep,
    profiles: ProfilesDep,
    channel: Channel | None = None,
    status: Annotated[
        str | None,
        Query(pattern="^(pending|suppressed|sent|delivered|failed)$"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MessagesOut:
    """Every send decision about the user, newest first: sent, suppressed (with the
    reason), delivered or failed, on any channel."""
    await known_profile(profiles, user_id)
    page = await MessageCentre(sessions).messages(
        UserMessagesInput(
            user_id=user_id,
            channel=channel,
            status=status,
            limit=limit,
            after=decode_cursor(cursor, MessagePosition),
        )
    )
    items = await _seen(sessions, principal, user_id, page.items)
    return MessagesOut(items=items, next_cursor=encode_cursor(page.next))


Message = TypeVar("Message", InboxItem, UserMessage)


async def _seen(
    sessions: SessionFactory, principal: Principal, user_id: str, messages: list[Message]
) -> list[Message]:
    """The messages of the business lines the principal sees."""
    if principal.sees_all:
        return messages
    lines = await Tenancy(sessions).message_lines(user_id, [m.id for m in messages])
    return [message for message in messages if principal.sees(lines.get(message.id, ""))]
