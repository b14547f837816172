"""Pages msgspec cannot decode for depth are read with their deep items cut (``shallow_page``), so
the payload rule refuses exactly those items and the cursor and the other items survive."""

from __future__ import annotations

import msgspec
import pytest

from callstream.contracts.providers import (
    MAX_JSON_DEPTH,
    FathomMeetingList,
    PayloadRejected,
    check_nesting,
    decode_fathom_meeting,
)
from callstream.gateway.pull._errors import RunFailed
from callstream.gateway.pull._shapes import decode_page, shallow_page

_page = msgspec.json.Decoder(FathomMeetingList)


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_a_deep_item_is_cut_to_one_level_past_the_rule_and_the_rest_is_kept() -> None:
    odd = b'{"recording_id": 2, "s": "[[\\"{", "x": %s}' % _nested(5_000)
    page = b'{"items": [{"recording_id": 1, "t": "]]"}, %s, {"recording_id": 3}], "next_cursor": "c2"}' % odd
    with pytest.raises(RecursionError):
        _page.decode(page)
    read = decode_page(_page, page, "test")
    assert read.next_cursor == "c2"
    first, cut, last = read.items
    assert bytes(first) == b'{"recording_id": 1, "t": "]]"}'
    assert bytes(last) == b'{"recording_id": 3}'
    with pytest.raises(PayloadRejected) as refused:
        decode_fathom_meeting(cut)
    assert refused.value.code == "nested_too_deep"
    check_nesting(msgspec.Raw(_nested(MAX_JSON_DEPTH)))  # the rule's limit itself passes
    with pytest.raises(PayloadRejected):
        check_nesting(cut, MAX_JSON_DEPTH)
    assert msgspec.json.decode(cut)["recording_id"] == 2  # the odd item's id can still be logged


def test_a_page_without_deep_items_comes_back_as_it_is() -> None:
    page = b'{"items": [{"a": "[[[[", "b": [[1]]}], "next_cursor": null}'
    assert shallow_page(page) is page


def test_a_deep_value_outside_the_items_is_cut_too() -> None:
    read = decode_page(_page, b'{"other": ' + _nested(5_000) + b', "items": [{"recording_id": 1}]}', "test")
    assert [bytes(item) for item in read.items] == [b'{"recording_id": 1}']


def test_a_page_that_is_not_json_fails_the_run() -> None:
    with pytest.raises(RunFailed, match="unreadable"):
        decode_page(_page, b'{"items": [', "test")
    with pytest.raises(RunFailed, match="nested too deep"):
        decode_page(_page, b'{"items": [' + b"[" * 5_000 + b"]}", "test")  # deep and unbalanced
