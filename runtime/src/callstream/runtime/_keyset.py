"""The cursor of a keyset page ordered by (a time, a uuid) newest first: where a page ended, handed
back by the caller for the next. One format for every such list (the gateway's integrations, the
scheduler's sync states, the linker's messages and contacts): urlsafe base64, unpadded, of the JSON
``["<time with zone>", "<uuid>"]``; the time may be null where the list's time may be (a message
without a start)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec

__all__ = ["BadCursor", "KeysetCursor", "decode_keyset_cursor", "encode_keyset_cursor"]


class KeysetCursor(msgspec.Struct, array_like=True, frozen=True):
    """The last row of a page: its time (UTC) and id; the next page starts strictly after it."""

    at: Annotated[datetime, msgspec.Meta(tz=True)] | None
    id: uuid.UUID


class BadCursor(ValueError):
    """Not a cursor this service issued (the caller's fault: a 400)."""


def encode_keyset_cursor(at: datetime | None, key: uuid.UUID | str) -> str:
    cursor = KeysetCursor(at, uuid.UUID(str(key)))
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_keyset_cursor(text: str, *, null_time: bool = False) -> KeysetCursor:
    """The cursor ``text`` names; a null time only where ``null_time`` (the list has rows without one)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=KeysetCursor)
        if cursor.at is None:
            if null_time:
                return cursor
            raise ValueError("no time")
        # In UTC here, not in the driver: year 1 at +01:00 is year 0 there (an OverflowError, a 500).
        return KeysetCursor(cursor.at.astimezone(UTC), cursor.id)
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError) as exc:
        raise BadCursor("cursor is not one this service issued") from exc
