"""Tombstones (issue #19, 1c): a message deleted at its provider is 410 Gone with its reason by id,
by provider identity and for its moment link, null in a resolve, left out of lists; a link the
cache holds is forgotten within a second of its ``MessageDeleted``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import MessageDeleted, messages_deleted_subject

Client = AsyncTestClient[Litestar]
Seed = Any
WaitLive = Callable[[Client], Awaitable[None]]
SHARE = "https://fathom.video/share/TOMBSTONE"
IDENT = {"workspace_id": "acme", "source": "fathom", "external_id": "1"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _tombstone(seed: Seed, message_id: uuid.UUID) -> None:
    """What the normalizer's tombstone does to the row (the event comes separately, from the outbox)."""
    await seed.conn.execute(
        "update messages set title = null, content = '', message_metadata = '{}'::jsonb, customer_id = null,"
        " version = version + 1, deleted_at = now(), deleted_reason = 'provider_deleted' where id = $1",
        message_id,
    )


async def test_a_tombstone_is_410_gone_and_out_of_every_list(linker: Client, seed: Seed, admin_token: str) -> None:
    gone = await seed.message("acme", "fathom", "1", {"recording_url": SHARE}, sent_at=datetime.now(UTC))
    kept = await seed.message("acme", "fathom", "2", {"recording_url": SHARE}, sent_at=datetime.now(UTC))
    await _tombstone(seed, gone)
    auth = bearer(admin_token)
    for path, params in (
        (f"/v1/messages/{gone}", {}),
        ("/v1/links", IDENT),
        (f"/v1/messages/{gone}/link", {"t": "5"}),
    ):
        r = await linker.get(path, params=params, headers=auth)
        assert r.status_code == 410, (path, r.text)
        assert r.json()["error"] == "gone_provider_deleted"
        assert "deleted at the provider" in r.json()["detail"]
    resolved = await linker.post("/v1/links/resolve", json={"message_ids": [str(gone), str(kept)]}, headers=auth)
    assert resolved.json()["links"][str(gone)] is None
    assert resolved.json()["links"][str(kept)]["url"] == SHARE
    listed = await linker.get("/v1/messages", params={"workspace_id": "acme"}, headers=auth)
    assert [m["id"] for m in listed.json()["items"]] == [str(kept)]
    # another workspace's token still learns nothing: 404, not 410
    other = await seed.token("other")
    assert (await linker.get(f"/v1/messages/{gone}", headers=bearer(other))).status_code == 404


async def test_a_cached_link_is_forgotten_on_message_deleted(
    linker: Client, seed: Seed, jetstream: Any, admin_token: str, wait_feed_live: WaitLive
) -> None:
    message_id = await seed.message("acme", "fathom", "1", {"recording_url": SHARE})
    await wait_feed_live(linker)
    auth = bearer(admin_token)
    for _ in range(2):
        assert (await linker.get("/v1/links", params=IDENT, headers=auth)).status_code == 200
    assert len(linker.app.state.link_cache) == 1

    await _tombstone(seed, message_id)
    event = MessageDeleted(
        message_id=str(message_id),
        workspace_id="acme",
        source="fathom",
        external_id="1",
        reason="provider_deleted",
        deleted_at=datetime.now(UTC),
        version=2,
    )
    await jetstream.publish(messages_deleted_subject("fathom"), msgspec.json.encode(event))
    published = time.monotonic()
    while (await linker.get("/v1/links", params=IDENT, headers=auth)).status_code != 410:
        assert time.monotonic() - published < 1.0, "a deleted message's link was served for more than a second"
        await asyncio.sleep(0.02)
