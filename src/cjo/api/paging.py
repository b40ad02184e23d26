"""List conventions: `?limit=` (default 50, max 500) and an opaque `?cursor=`.

A cursor is the position where the previous page ended (a small pydantic model), as
URL-safe base64 JSON. It is opaque to clients, and one this API did not give is a 422.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, TypeVar

from fastapi import Query
from pydantic import BaseModel, ValidationError

from cjo.api.problems import ApiProblem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")
]
Cursor = Annotated[
    str | None, Query(max_length=1024, description="the `next_cursor` of the previous page")
]
Position = TypeVar("Position", bound=BaseModel)


def encode_cursor(position: BaseModel | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(position.model_dump_json().encode()).decode()


def decode_cursor(cursor: str | None, model: type[Position]) -> Position | None:
    if cursor is None:
        return None
    try:
        return model.model_validate_json(base64.urlsafe_b64decode(cursor.encode()))
    except (ValidationError, binascii.Error, ValueError):
        raise ApiProblem(422, "invalid-request", "the cursor is not one this API gave") from None
