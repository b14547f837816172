"""The hot-link cache: used while its event feed is live, dropped by MessageUpserted within a
second, and bypassed while the broker is away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import MessageUpserted, messages_upserted_subject
from callstream.linker import Settings, build_app
from callstream.runtime import ensure_all

Client = AsyncTestClient[Litestar]
Seed = Any
WaitLive = Callable[[Client], Awaitable[None]]
OLD = "https://fathom.video/share/OLD"
NEW = "https://fathom.video/share/NEW"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _change_link(seed: Seed, message_id: uuid.UUID, url: str, version: int) -> None:
    """What the normalizer's upsert does to the row (the event comes separately, from the outbox)."""
    await seed.conn.execute(
        "update messages set message_metadata = $2, version = $3, updated_at = now() where id = $1",
        message_id,
        {"recording_url": url},
        version,
    )


async def _link(client: Client, token: str, message_id: uuid.UUID) -> tuple[str | None, str | None]:
    by_ident = await client.get(
        "/v1/links", params={"workspace_id": "acme", "source": "fathom", "external_id": "1"}, headers=bearer(token)
    )
    by_id = await client.post("/v1/links/resolve", json={"message_ids": [str(message_id)]}, headers=bearer(token))
    return by_ident.json()["url"], by_id.json()["links"][str(message_id)]["url"]


async def test_changed_link_is_served_within_a_second_of_its_event(
    linker: Client, seed: Seed, jetstream: Any, admin_token: str, wait_feed_live: WaitLive
) -> None:
    message_id = await seed.message("acme", "fathom", "1", {"recording_url": OLD})
    await wait_feed_live(linker)
    assert await _link(linker, admin_token, message_id) == (OLD, OLD)
    assert len(linker.app.state.link_cache) == 1

    await _change_link(seed, message_id, NEW, 2)
    # Without its event the row change is not seen yet: the answers come from the cache.
    assert await _link(linker, admin_token, message_id) == (OLD, OLD)

    event = MessageUpserted(
        message_id=str(message_id), workspace_id="acme", source="fathom", external_id="1", change="updated", version=2
    )
    await jetstream.publish(messages_upserted_subject("fathom"), msgspec.json.encode(event))
    published = time.monotonic()
    while await _link(linker, admin_token, message_id) != (NEW, NEW):
        assert time.monotonic() - published < 1.0, "a changed link was served stale for more than a second"
        await asyncio.sleep(0.02)


async def test_an_older_version_is_never_cached_after_a_newer_event(
    linker: Client, seed: Seed, jetstream: Any, admin_token: str, wait_feed_live: WaitLive
) -> None:
    """A lagging replica can still return version 1 after the event for version 2 arrived: that
    answer may be served once, but it must not be cached."""
    message_id = await seed.message("acme", "fathom", "1", {"recording_url": OLD})
    await wait_feed_live(linker)
    event = MessageUpserted(
        message_id=str(message_id), workspace_id="acme", source="fathom", external_id="1", change="updated", version=2
    )
    await jetstream.publish(messages_upserted_subject("fathom"), msgspec.json.encode(event))
    cache = linker.app.state.link_cache
    deadline = time.monotonic() + 5
    while cache.announced_version(str(message_id)) != 2:  # the event has reached the cache
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await _link(linker, admin_token, message_id) == (OLD, OLD)  # the "replica" is behind
    assert len(cache) == 0
    await _change_link(seed, message_id, NEW, 2)
    assert await _link(linker, admin_token, message_id) == (NEW, NEW)
    assert len(cache) == 1


@pytest.fixture
async def linker_on_own_nats(linker_env: None, monkeypatch: pytest.MonkeyPatch, own_nats: Any) -> Any:
    nc = await nats.connect(own_nats.url)
    await ensure_all(nc.jetstream())
    await nc.close()
    monkeypatch.setenv("CALLSTREAM_NATS_URL", own_nats.url)
    app = build_app(Settings())  # type: ignore[call-arg]
    async with AsyncTestClient(app) as client:
        yield client, own_nats


async def test_cache_is_bypassed_while_the_broker_is_away(
    linker_on_own_nats: Any, seed: Seed, admin_token: str, wait_feed_live: WaitLive
) -> None:
    client, server = linker_on_own_nats
    message_id = await seed.message("acme", "fathom", "1", {"recording_url": OLD})
    await wait_feed_live(client)
    assert await _link(client, admin_token, message_id) == (OLD, OLD)
    await _change_link(seed, message_id, "https://fathom.video/share/MID", 2)
    assert await _link(client, admin_token, message_id) == (OLD, OLD)  # cached, as it should be

    server.stop()
    feed = client.app.state.event_feed
    deadline = time.monotonic() + 10
    while feed.state().live:
        assert time.monotonic() < deadline, "the feed never noticed the broker was gone"
        await asyncio.sleep(0.05)
    # No event can arrive now, so nothing may come from the cache: every change is seen at once.
    assert await _link(client, admin_token, message_id) == (
        "https://fathom.video/share/MID",
        "https://fathom.video/share/MID",
    )
    await _change_link(seed, message_id, NEW, 3)
    assert await _link(client, admin_token, message_id) == (NEW, NEW)
    r = await client.get("/health/ready")
    assert r.status_code == 503
