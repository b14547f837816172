"""The hot-link cache's rules, without servers: event invalidation, racing fills, versions,
a feed that went away, the size bound and the backstop age."""

from __future__ import annotations

from callstream.contracts import MessageUpserted
from callstream.linker._cache import FeedState, LinkCache, is_unknown_host
from callstream.linker._links import LinkFacts


class Feed:
    def __init__(self) -> None:
        self.state = FeedState(live=True, generation=1)

    def __call__(self) -> FeedState:
        return self.state


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def facts(n: int, version: int = 1, url: str = "https://fathom.video/share/a") -> LinkFacts:
    return LinkFacts(
        message_id=f"m{n}", workspace_id="w", source="fathom", external_id=str(n), version=version, recording_url=url
    )


def event(n: int, version: int = 2, source: str = "fathom") -> MessageUpserted:
    return MessageUpserted(
        message_id=f"m{n}", workspace_id="w", source=source, external_id=str(n), change="updated", version=version
    )  # type: ignore[arg-type]


def cache(entries: int = 10, feed: Feed | None = None, clock: Clock | None = None) -> LinkCache:
    return LinkCache(entries, 60.0, feed or Feed(), clock or Clock())


def test_stored_facts_are_found_by_id_and_identity() -> None:
    c = cache()
    c.store(facts(1), c.epoch)
    assert c.by_id("m1") == facts(1)
    assert c.by_ident("w", "fathom", "1") == facts(1)
    assert c.by_ident("other", "fathom", "1") is None


def test_an_event_drops_the_entry() -> None:
    c = cache()
    c.store(facts(1), c.epoch)
    c.invalidate(event(1))
    assert c.by_id("m1") is None
    assert c.by_ident("w", "fathom", "1") is None


def test_a_fill_that_raced_with_an_event_is_not_stored() -> None:
    c = cache()
    epoch = c.epoch  # read started ...
    c.invalidate(event(7))  # ... an event arrived meanwhile ...
    c.store(facts(1), epoch)  # ... so the read may be stale
    assert c.by_id("m1") is None


def test_a_version_older_than_an_announced_one_is_not_stored() -> None:
    c = cache()
    c.invalidate(event(1, version=3))
    c.store(facts(1, version=2), c.epoch)
    assert c.by_id("m1") is None
    c.store(facts(1, version=3), c.epoch)
    assert c.by_id("m1") is not None


def test_a_tombstone_is_forgotten_and_an_older_read_not_cached_again() -> None:
    """A read replica lagging behind the tombstone still has the live version: a look-up after
    the MessageDeleted must not put that version back in memory (it would be served for the
    backstop age)."""
    c = cache()
    c.store(facts(1, version=1), c.epoch)
    c.forget("m1", ("w", "fathom", "1"), 2)
    assert c.by_id("m1") is None
    assert c.by_ident("w", "fathom", "1") is None
    c.store(facts(1, version=1), c.epoch)  # the replica's pre-tombstone row
    assert c.by_id("m1") is None


def test_nothing_is_served_or_stored_while_the_feed_is_down() -> None:
    feed = Feed()
    c = cache(feed=feed)
    c.store(facts(1), c.epoch)
    feed.state = FeedState(live=False, generation=1)
    assert c.by_id("m1") is None
    c.store(facts(2), c.epoch)
    feed.state = FeedState(live=True, generation=1)
    assert c.by_id("m2") is None


def test_a_new_feed_generation_forgets_everything() -> None:
    feed = Feed()
    c = cache(feed=feed)
    c.store(facts(1), c.epoch)
    feed.state = FeedState(live=True, generation=2)  # reconnected: events may have been missed
    assert c.by_id("m1") is None
    assert len(c) == 0


def test_size_bound_evicts_the_least_recently_used() -> None:
    c = cache(entries=2)
    c.store(facts(1), c.epoch)
    c.store(facts(2), c.epoch)
    assert c.by_id("m1") is not None  # m1 is now the most recent
    c.store(facts(3), c.epoch)
    assert c.by_id("m2") is None
    assert c.by_id("m1") is not None
    assert c.by_ident("w", "fathom", "2") is None
    assert len(c) == 2


def test_entries_expire_after_the_backstop_age() -> None:
    clock = Clock()
    c = cache(clock=clock)
    c.store(facts(1), c.epoch)
    clock.now = 61.0
    assert c.by_id("m1") is None


def test_gong_events_drop_the_workspace_host() -> None:
    c = cache()
    c.store_gong_host("w", "us-1.app.gong.io", c.epoch)
    assert c.gong_host("w") == "us-1.app.gong.io"
    c.invalidate(event(1, source="fathom"))
    assert c.gong_host("w") == "us-1.app.gong.io"
    c.invalidate(event(1, source="gong"))
    assert is_unknown_host(c.gong_host("w"))


def test_size_zero_turns_the_cache_off() -> None:
    c = cache(entries=0)
    c.store(facts(1), c.epoch)
    assert c.by_id("m1") is None
