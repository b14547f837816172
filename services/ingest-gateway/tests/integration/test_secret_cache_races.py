"""The webhook-secret cache (issue #17, item 5): a full reload never undoes a newer change, and every
spelling of an integration id is one entry. On the real PostgreSQL and JetStream of the test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest
from gateway_harness import ADMIN, WEBHOOK_SECRET, FakeProvider, Gateway, make_settings, start_gateway
from nats.js import JetStreamContext

from callstream.contracts import CALLS_RAW, RawCall
from callstream.gateway._credentials import seal_webhook_secret
from callstream.gateway._secret_cache import WebhookSecretCache

MEETING = b'{"recording_id": 512330871, "title": "Pilot scoping"}'


def spellings(iid: str) -> list[str]:
    """Other ways to write the same UUID that ``uuid.UUID`` (and PostgreSQL) accept."""
    hex_ = iid.replace("-", "")
    return [iid.upper(), "{" + iid + "}", "urn:uuid:" + iid, hex_, hex_.upper()]


class HeldFetches:
    """The pool, except that ``fetch`` (the full reload's query) runs for real and then holds its
    rows until ``release``: a full reload that read the table just before a change and gets its
    rows back just after the change was applied."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.fetched = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        rows = await self._pool.fetch(*args)
        self.fetched.set()
        await self.release.wait()
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


async def _insert(pool: asyncpg.Pool, cipher: Any) -> str:
    iid = uuid.uuid4()
    await pool.execute(
        "insert into integrations (id, workspace_id, provider, auth_kind, webhook_secret)"
        " values ($1, 'ws-race', 'fathom', 'api_key', $2)",
        iid,
        seal_webhook_secret(cipher, str(iid), WEBHOOK_SECRET),
    )
    return str(iid)


async def test_a_full_reload_that_read_before_a_disable_does_not_undo_it(
    pool: asyncpg.Pool, database_url: str, nats_url: str
) -> None:
    cipher = make_settings(database_url, nats_url).cipher()
    cache = WebhookSecretCache(cipher, ttl_seconds=30.0)
    iid = await _insert(pool, cipher)
    await cache.reload_all(pool)
    assert cache.get(iid).status == "active"  # type: ignore[union-attr]

    held = HeldFetches(pool)
    full = asyncio.create_task(cache.reload_all(held))  # type: ignore[arg-type]
    await held.fetched.wait()  # it has read the integration as active
    await pool.execute("update integrations set status = 'disabled' where id = $1", uuid.UUID(iid))
    await cache.reload_one(pool, iid)  # what the NOTIFY of the update does
    assert cache.get(iid).status == "disabled"  # type: ignore[union-attr]
    held.release.set()
    await full
    assert cache.get(iid).status == "disabled"  # type: ignore[union-attr]

    # the other order: a full reload that started after the change applies in full
    await pool.execute("update integrations set status = 'active' where id = $1", uuid.UUID(iid))
    await cache.reload_all(pool)
    assert cache.get(iid).status == "active"  # type: ignore[union-attr]


async def test_an_older_single_reload_does_not_undo_a_newer_one(
    pool: asyncpg.Pool, database_url: str, nats_url: str
) -> None:
    cipher = make_settings(database_url, nats_url).cipher()
    cache = WebhookSecretCache(cipher, ttl_seconds=30.0)
    iid = await _insert(pool, cipher)
    await cache.reload_all(pool)

    class HeldRow(HeldFetches):
        async def fetchrow(self, *args: Any) -> Any:
            row = await self._pool.fetchrow(*args)
            self.fetched.set()
            await self.release.wait()
            return row

    held = HeldRow(pool)
    older = asyncio.create_task(cache.reload_one(held, iid))  # type: ignore[arg-type]
    await held.fetched.wait()  # read while still active
    await pool.execute("update integrations set status = 'disabled' where id = $1", uuid.UUID(iid))
    await cache.reload_one(pool, iid)
    held.release.set()
    await older
    assert cache.get(iid).status == "disabled"  # type: ignore[union-attr]


async def test_every_spelling_of_an_id_is_the_same_entry(pool: asyncpg.Pool, database_url: str, nats_url: str) -> None:
    cipher = make_settings(database_url, nats_url).cipher()
    cache = WebhookSecretCache(cipher, ttl_seconds=30.0)
    iid = await _insert(pool, cipher)
    await cache.reload_all(pool)
    canonical = cache.get(iid)
    assert canonical is not None
    for spelling in spellings(iid):
        assert cache.get(spelling) is canonical, spelling
    # a change announced under another spelling (e.g. DELETE /v1/integrations/<UPPER CASE>) reaches
    # the one entry: no spelling keeps the old secret
    await pool.execute("update integrations set status = 'disabled' where id = $1", uuid.UUID(iid))
    await cache.reload_one(pool, iid.upper())
    for spelling in [iid, *spellings(iid)]:
        target = cache.get(spelling)
        assert target is not None, spelling
        assert target.status == "disabled", spelling
    await pool.execute("delete from integrations where id = $1", uuid.UUID(iid))
    await cache.reload_one(pool, "{" + iid + "}")
    assert all(cache.get(s) is None for s in [iid, *spellings(iid)])
    assert cache.get("not-a-uuid") is None


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def _raw_calls(js: JetStreamContext) -> list[RawCall]:
    import msgspec

    info = await js.stream_info(CALLS_RAW)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        found.append(msgspec.json.decode((await js.get_msg(CALLS_RAW, seq)).data, type=RawCall))
    return found


async def test_a_webhook_under_another_spelling_is_the_same_integration(gateway: Gateway, js: JetStreamContext) -> None:
    iid = (await gateway.create_fathom())["id"]
    first = await gateway.deliver(iid, MEETING, webhook_id="msg_once")
    assert first.status_code == 202, first.text
    for spelling in spellings(iid):
        again = await gateway.deliver(spelling, MEETING, webhook_id="msg_once")
        assert again.status_code == 202, (spelling, again.text)
        assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}, spelling
    [raw] = await _raw_calls(js)
    assert raw.integration_id == iid
    disabled = await gateway.client.delete(f"/v1/integrations/{iid.upper()}", headers=ADMIN)
    assert disabled.status_code == 200, disabled.text
    for spelling in [iid, *spellings(iid)]:
        refused = await gateway.deliver(spelling, MEETING)
        assert refused.status_code == 404, (spelling, refused.text)
    assert len(await _raw_calls(js)) == 1


async def test_disabled_webhooks_are_refused_at_once_while_full_reloads_run_back_to_back(
    database_url: str, nats_url: str, jetstream: object, fake_provider: FakeProvider, js: JetStreamContext
) -> None:
    """A cache reloading in full back to back (TTL 10 ms) over a table big enough that each reload's
    query is in flight most of the time: every disable lands while some reload is reading, and no
    webhook sent after the disable was answered may be accepted."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "insert into integrations (id, workspace_id, provider, auth_kind)"
            " select gen_random_uuid(), 'ws-filler', 'fathom', 'api_key' from generate_series(1, 20000)"
        )
    finally:
        await conn.close()
    settings = make_settings(database_url, nats_url, CALLSTREAM_GATEWAY_SECRET_CACHE_TTL_SECONDS=0.01)
    async for gw in start_gateway(settings, fake_provider):
        ids = [(await gw.create_fathom())["id"] for _ in range(6)]
        for iid in ids:
            await gw.wait_cached(iid)
        accepted_after_disable = []
        for iid in ids:
            assert (await gw.deliver(iid, MEETING)).status_code == 202
            assert (await gw.client.delete(f"/v1/integrations/{iid}", headers=ADMIN)).status_code == 200
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                answer = await gw.deliver(iid, MEETING)
                if answer.status_code != 404:
                    accepted_after_disable.append((iid, answer.status_code))
                await asyncio.sleep(0.005)
        assert accepted_after_disable == []
