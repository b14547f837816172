"""The keyset cursor the gateway's, the scheduler's and the linker's pages share: a round trip keeps the row's
place (in UTC), and anything this code did not issue is a BadCursor, never another error (a 500)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from callstream.runtime import BadCursor, decode_keyset_cursor, encode_keyset_cursor

KEY = uuid.UUID("00000000-0000-4000-8000-000000000001")


def test_a_cursor_comes_back_as_the_rows_place_in_utc() -> None:
    at = datetime(2026, 12, 2, 18, 0, tzinfo=timezone(timedelta(hours=2)))
    cursor = decode_keyset_cursor(encode_keyset_cursor(at, str(KEY)))
    assert (cursor.at, cursor.id) == (at, KEY)
    assert cursor.at.tzinfo == UTC
    assert "=" not in encode_keyset_cursor(at, KEY)


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        _raw("[]"),
        _raw('["2026-12-02T18:00:00", "00000000-0000-4000-8000-000000000001"]'),  # no zone
        _raw('["0001-01-01T00:30:00+01:00", "00000000-0000-4000-8000-000000000001"]'),  # year 0 in UTC
        _raw('["2026-12-02T18:00:00Z", "nope"]'),
        _raw('{"at": "2026-12-02T18:00:00Z"}'),
    ],
)
def test_anything_else_is_a_bad_cursor(text: str) -> None:
    with pytest.raises(BadCursor):
        decode_keyset_cursor(text)


def test_a_null_time_only_where_the_list_has_rows_without_one() -> None:
    text = encode_keyset_cursor(None, KEY)  # a message that has no start
    assert decode_keyset_cursor(text, null_time=True).at is None
    with pytest.raises(BadCursor):
        decode_keyset_cursor(text)  # integrations and states always have one
