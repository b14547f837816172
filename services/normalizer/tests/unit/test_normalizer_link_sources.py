"""The link keys an event carries are read back from the metadata bytes that are stored."""

from __future__ import annotations

from callstream.contracts import LinkSources
from callstream.normalizer._mapped import encode_json, link_sources


def test_the_link_keys_of_the_stored_bytes_and_nothing_else() -> None:
    metadata = {
        "recording_url": "https://fathom.video/share/abc",
        "url": "https://fathom.video/calls/1",
        "title": "Discovery",
        "raw_session_data": {"url": "https://elsewhere.example/nested", "share_url": "https://x.example"},
    }
    assert link_sources(encode_json(metadata)) == LinkSources(
        recording_url="https://fathom.video/share/abc", url="https://fathom.video/calls/1"
    )


def test_a_nul_the_database_would_drop_is_dropped_from_the_event_too() -> None:
    stored = encode_json({"url": "https://app.gong.io/call?id=1\x00"})
    assert link_sources(stored) == LinkSources(url="https://app.gong.io/call?id=1")


def test_no_keys_and_null_keys_give_empty_sources() -> None:
    assert link_sources(encode_json({"title": "x"})) == LinkSources()
    assert link_sources(encode_json({"url": None, "call_id": None})) == LinkSources()


def test_a_key_that_is_not_a_string_gives_no_sources_so_the_row_decides() -> None:
    assert link_sources(encode_json({"call_id": 5520183947712650031, "url": "https://app.gong.io/x"})) is None
    assert link_sources(encode_json({"url": ["https://app.gong.io/x"]})) is None
