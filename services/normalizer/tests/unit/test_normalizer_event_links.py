"""MessageUpserted's link fields pass the linker's rule, whatever the provider sent (issue #17,
item 3): an unsafe or oversized URL is null with its reason, and link_sources is dropped unless
every URL in it would be served."""

from __future__ import annotations

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, LinkSources
from callstream.normalizer._mapped import MAX_EVENT_TITLE, event_title, vet_links

SHARE = "https://fathom.video/share/abc"
CALL = "https://fathom.video/calls/42"


def test_safe_links_pass_unchanged() -> None:
    sources = LinkSources(recording_url=SHARE, url=CALL)
    assert vet_links(SHARE, sources, DEFAULT_LINK_ALLOW_LIST) == (SHARE, None, sources)


def test_an_oversized_share_url_is_null_with_its_reason_and_drops_link_sources() -> None:
    huge = "https://fathom.video/share/" + "a" * 540_000
    url, reason, sources = vet_links(huge, LinkSources(recording_url=huge, url=CALL), DEFAULT_LINK_ALLOW_LIST)
    assert (url, reason, sources) == (None, "too_long", None)


def test_a_host_off_the_allow_list_is_refused() -> None:
    evil = "https://fathom.video@evil.example/share/abc"
    url, reason, sources = vet_links(evil, LinkSources(recording_url=evil), DEFAULT_LINK_ALLOW_LIST)
    assert (url, reason, sources) == (None, "userinfo_not_allowed", None)
    assert vet_links("javascript:alert(1)", None, DEFAULT_LINK_ALLOW_LIST)[:2] == (None, "not_https")


def test_no_link_is_no_reason() -> None:
    assert vet_links(None, LinkSources(), DEFAULT_LINK_ALLOW_LIST) == (None, None, LinkSources())


def test_the_event_title_is_bounded() -> None:
    assert event_title("x" * 10_000) == "x" * MAX_EVENT_TITLE
    assert event_title("short") == "short"
    assert event_title(None) is None


def test_a_refused_link_drops_link_sources_even_when_the_metadata_kept_none() -> None:
    # The mapping nulls the refused URL in the metadata, so link_sources alone would resolve past
    # the refusal (for Gong: to a link built from the call id).
    sources = LinkSources(url=None, call_id="5520183947712650031")
    url, reason, kept = vet_links("javascript:alert(1)", sources, DEFAULT_LINK_ALLOW_LIST)
    assert (url, reason, kept) == (None, "not_https", None)
