"""Opaque, stable cursors for list endpoints.

A cursor names the sort key of the last item a page returned; the next page starts strictly after
it. Rows inserted meanwhile land before the first page (lists are newest first) or in their sorted
place, never shifting the items a client has not seen yet.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

from app.api.params import MAX_ROW_ID
from app.config import Settings
from app.errors import BadRequest, ErrorCode

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = None


def page_of(rows: list[Item], size: int, key: Callable[[Item], int | str]) -> Page[Item]:
    """The first `size` of `rows` (fetch `size + 1`: one more says another page exists)."""
    items = rows[:size]
    more = len(rows) > size
    return Page[Item](items=items, next_cursor=encode_cursor(key(items[-1])) if more else None)


def encode_cursor(last_key: int | str) -> str:
    raw = json.dumps({"after": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, key_type: type[int] | type[str]) -> int | str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "The cursor is not one this API returned.", code=ErrorCode.INVALID_CURSOR
        ) from exc
    if type(value) is not key_type or (type(value) is int and not 0 <= value <= MAX_ROW_ID):
        raise BadRequest("The cursor is not one this API returned.", code=ErrorCode.INVALID_CURSOR)
    return value


def page_size(limit: int | None, settings: Settings) -> int:
    """The requested page size, the default when none was asked for."""
    if limit is None:
        return settings.default_page_size
    if limit < 1 or limit > settings.max_page_size:
        raise BadRequest(
            f"limit must be between 1 and {settings.max_page_size}.",
            code=ErrorCode.INVALID_LIMIT,
            limit=limit,
            max_page_size=settings.max_page_size,
        )
    return limit
