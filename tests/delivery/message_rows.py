"""Messages and profiles written straight to the database, for feedback and inbox tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import SQLModel

from cjo.store.db import SessionFactory
from cjo.store.schema import Message, Profile

AT = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def message(message_id: str, **changes: Any) -> Message:
    values: dict[str, Any] = {
        "id": message_id,
        "key": f"journey/retail/salary-day-offer/u1@run/push_offer/{message_id}",
        "business_line": "retail",
        "journey": "salary-day-offer",
        "workflow_id": "journey/retail/salary-day-offer/u1",
        "step_id": "push_offer",
        "user_id": "u1",
        "channel": "push",
        "template": "salary-offer-push",
        "marketing": True,
        "status": "sent",
        "body": "Hi",
        "not_before": AT,
    }
    return Message(**(values | changes))


async def store(sessions: SessionFactory, *rows: SQLModel) -> None:
    async with sessions() as session, session.begin():
        session.add_all(rows)


async def add_profile(sessions: SessionFactory, user_id: str = "u1", **fields: Any) -> None:
    await store(sessions, Profile(id=user_id, name="Li Lei", **fields))
