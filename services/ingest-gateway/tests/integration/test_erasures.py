"""Erasure (#19 section 2), the gateway's part: ``DELETE /v1/integrations/{id}?erase=true`` and
``DELETE /v1/workspaces/{id}`` wipe the integrations' secrets, delete the Fathom webhook and the
pull checkpoints, announce the job (``ErasureRequested`` and the gateway's ``ErasureFinished``)
and answer 202 only after both are acknowledged; ``GET /v1/erasures/{id}`` follows the job until
every service's part is in (the test publishes the normalizer's and the scheduler's itself)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec
import nats
from gateway_harness import ADMIN, FakeProvider, Gateway, make_settings, signed_headers, start_gateway

from callstream.contracts import (
    CALLS_RAW,
    ERASURES,
    ERASURES_REQUESTED,
    ErasureFinished,
    ErasureRequested,
    erasures_finished_subject,
)
from callstream.devstack._servers import NatsServer
from callstream.gateway.pull import Checkpoint, CheckpointStore
from callstream.gateway.pull._checkpoint import Listing
from callstream.runtime import ensure_all

MEETING = b'{"recording_id": 777001, "title": "to be forgotten"}'
BUCKET = "gateway_pull_checkpoints"  # CALLSTREAM_GATEWAY_PULL_CHECKPOINT_BUCKET's default


async def _fetch_row(gw: Gateway, sql: str, *args: Any) -> asyncpg.Record | None:
    conn = await asyncpg.connect(gw.settings.database_url.get_secret_value())
    try:
        row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
        return row
    finally:
        await conn.close()


async def _erasure_events(js: Any) -> list[tuple[str, bytes, str | None]]:
    info = await js.stream_info(ERASURES)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        msg = await js.get_msg(ERASURES, seq)
        out.append((msg.subject, msg.data, (msg.headers or {}).get("Nats-Msg-Id")))
    return out


async def _finish(js: Any, erasure_id: str, service: str, **counts: int) -> None:
    done = ErasureFinished(erasure_id=erasure_id, service=service, counts=counts, finished_at=datetime.now(UTC))  # type: ignore[arg-type]
    await js.publish(
        erasures_finished_subject(service),
        msgspec.json.encode(done),
        headers={"Nats-Msg-Id": f"{erasure_id}:finished:{service}"},
    )


async def _until_done(gw: Gateway, erasure_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = (await gw.client.get(f"/v1/erasures/{erasure_id}", headers=ADMIN)).json()
        if job["status"] == "done":
            return dict(job)
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def test_erasing_an_integration_wipes_it_deletes_its_webhook_and_checkpoints_and_follows_the_job(
    gateway: Gateway, jetstream: Any
) -> None:
    gw, fake = gateway, gateway.fake
    kept = await gw.create_fathom("ws-erase")
    erased = await gw.create_fathom("ws-erase", webhook_secret=None, register_webhook=True)
    iid = erased["id"]
    ((hook_id, secret),) = fake.webhooks.items()
    assert (await gw.deliver(iid, MEETING, secret=secret)).status_code == 202
    await jetstream.purge_stream(CALLS_RAW)
    checkpoints = await CheckpointStore.open(jetstream, BUCKET, ttl_seconds=3600)
    await checkpoints.save("run-erased", Checkpoint(pages=3, integration_id=iid))
    listed = Listing(started_at=datetime.now(UTC), ids=["777001"], integration_id=iid)  # provider call ids
    await checkpoints.save_listing("run-erased", listed)
    await checkpoints.save("run-kept", Checkpoint(pages=1, integration_id=kept["id"]))

    answer = await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
    assert answer.status_code == 202, answer.text
    erasure_id = answer.json()["erasure_id"]
    assert answer.json() == {"erasure_id": erasure_id, "status": "running", "status_url": f"/v1/erasures/{erasure_id}"}

    assert hook_id not in fake.webhooks  # deleted at Fathom
    row = await _fetch_row(gw, "select * from integrations where id = $1::uuid", iid)
    assert row is not None
    assert row["status"] == "erased"
    assert (row["credentials"], row["webhook_secret"], row["webhook_id"], row["base_url"], row["last_error"]) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert row["settings"] == "{}"  # jsonb as text (no codec on this connection)
    other = await _fetch_row(gw, "select status, credentials from integrations where id = $1::uuid", kept["id"])
    assert other is not None
    assert other["status"] == "active"
    assert other["credentials"] is not None
    assert (await gw.client.get(f"/v1/integrations/{iid}", headers=ADMIN)).json()["status"] == "erased"

    # Its webhooks are refused and kept nowhere, even correctly signed with the old secret.
    late = await gw.client.post(
        f"/v1/webhooks/fathom/{iid}", content=MEETING, headers=signed_headers(MEETING, secret=secret)
    )
    assert late.status_code == 404
    assert (await jetstream.stream_info(CALLS_RAW)).state.messages == 0

    assert await checkpoints.load("run-erased") is None
    assert await checkpoints.load_listing("run-erased") is None
    assert await checkpoints.load("run-kept") is not None

    events = await _erasure_events(jetstream)
    assert [(s, i) for s, _, i in events] == [
        (ERASURES_REQUESTED, erasure_id),
        (erasures_finished_subject("gateway"), f"{erasure_id}:finished:gateway"),
    ]
    requested = msgspec.json.decode(events[0][1], type=ErasureRequested)
    assert (requested.scope, requested.workspace_id, requested.integration_ids) == ("integration", "ws-erase", [iid])
    gateway_part = msgspec.json.decode(events[1][1], type=ErasureFinished)
    assert gateway_part.counts == {
        "integrations": 1,
        "credentials": 1,
        "webhook_secrets": 1,
        "webhook_registrations": 1,
        "webhook_registrations_not_deleted": 0,
        "oauth_states": 0,
        "checkpoints": 2,  # the run's checkpoint and its listing
    }

    again = await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
    assert again.status_code == 202
    assert again.json()["erasure_id"] == erasure_id
    assert len(await _erasure_events(jetstream)) == 2  # the same ids: not doubled

    await _finish(jetstream, erasure_id, "normalizer", messages=5, raw_events=7)
    deadline = time.monotonic() + 10
    while True:  # the gateway's own part recorded, the normalizer's too; the scheduler's missing
        job = (await gw.client.get(f"/v1/erasures/{erasure_id}", headers=ADMIN)).json()
        if job["parts"]["normalizer"]["status"] == "done" and job["parts"]["gateway"]["status"] == "done":
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)
    assert job["status"] == "running"
    assert job["parts"]["scheduler"] == {"status": "running", "counts": {}, "finished_at": None}
    await _finish(jetstream, erasure_id, "scheduler", sync_runs=2)
    await _finish(jetstream, erasure_id, "normalizer", messages=99)  # a repeat changes nothing
    job = await _until_done(gw, erasure_id)
    assert job["finished_at"] is not None
    assert job["integration_ids"] == [iid]
    assert job["counts"]["messages"] == 5
    assert job["counts"]["sync_runs"] == 2
    assert job["counts"]["integrations"] == 1
    assert (await gw.client.get("/v1/erasures/00000000-0000-0000-0000-000000000000", headers=ADMIN)).status_code == 404
    assert (await gw.client.get("/v1/erasures/nope", headers=ADMIN)).status_code == 404

    # Done: the DELETE again answers with the finished job; disabling it does not revive a status.
    assert (await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)).json() == {
        "erasure_id": erasure_id,
        "status": "done",
        "status_url": f"/v1/erasures/{erasure_id}",
    }
    assert (await gw.client.delete(f"/v1/integrations/{iid}", headers=ADMIN)).json()["status"] == "erased"


async def test_fathom_unreachable_is_reported_and_the_integration_erased_anyway(gateway: Gateway) -> None:
    gw, fake = gateway, gateway.fake
    iid = (await gw.create_fathom("ws-down", webhook_secret=None, register_webhook=True))["id"]
    fake.delete_status = 503
    answer = await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
    assert answer.status_code == 202, answer.text
    job = (await gw.client.get(answer.json()["status_url"], headers=ADMIN)).json()
    deadline = time.monotonic() + 10
    while job["parts"]["gateway"]["status"] != "done":
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)
        job = (await gw.client.get(answer.json()["status_url"], headers=ADMIN)).json()
    assert job["parts"]["gateway"]["counts"]["webhook_registrations_not_deleted"] == 1
    assert job["parts"]["gateway"]["counts"]["webhook_registrations"] == 0
    row = await _fetch_row(gw, "select status, webhook_id, webhook_secret from integrations where id = $1::uuid", iid)
    assert row is not None
    assert tuple(row) == ("erased", None, None)


async def test_erasing_a_workspace_takes_every_integration_and_its_tokens(gateway: Gateway, jetstream: Any) -> None:
    gw = gateway
    first = (await gw.create_fathom("ws-gone", webhook_secret=None, register_webhook=True))["id"]
    second = (await gw.create_fathom("ws-gone", webhook_secret=None, register_webhook=True))["id"]
    other = (await gw.create_fathom("ws-stays"))["id"]
    assert (await gw.client.delete(f"/v1/integrations/{second}", headers=ADMIN)).status_code == 200  # disabled
    only = await gw.client.post("/v1/tokens", json={"workspace_ids": ["ws-gone"], "name": "only"}, headers=ADMIN)
    both = await gw.client.post(
        "/v1/tokens", json={"workspace_ids": ["ws-gone", "ws-stays"], "name": "both"}, headers=ADMIN
    )

    answer = await gw.client.delete("/v1/workspaces/ws-gone", headers=ADMIN)
    assert answer.status_code == 202, answer.text
    erasure_id = answer.json()["erasure_id"]
    job = (await gw.client.get(f"/v1/erasures/{erasure_id}", headers=ADMIN)).json()
    assert job["scope"] == "workspace"
    assert sorted(job["integration_ids"]) == sorted([first, second])
    for iid in (first, second):
        row = await _fetch_row(gw, "select status, credentials from integrations where id = $1::uuid", iid)
        assert row is not None
        assert tuple(row) == ("erased", None)
    row = await _fetch_row(gw, "select status from integrations where id = $1::uuid", other)
    assert row is not None
    assert row["status"] == "active"
    assert await _fetch_row(gw, "select 1 from api_tokens where id = $1::uuid", only.json()["id"]) is None
    row = await _fetch_row(gw, "select workspace_ids from api_tokens where id = $1::uuid", both.json()["id"])
    assert row is not None
    assert row["workspace_ids"] == ["ws-stays"]

    again = await gw.client.delete("/v1/workspaces/ws-gone", headers=ADMIN)
    assert again.json()["erasure_id"] == erasure_id  # the running job
    gateway_part = msgspec.json.decode(
        next(d for s, d, _ in await _erasure_events(jetstream) if s == erasures_finished_subject("gateway")),
        type=ErasureFinished,
    )
    assert gateway_part.counts["integrations"] == 2
    # The disabled one's webhook was deleted when it was disabled; the other's now.
    assert gateway_part.counts["webhook_registrations"] == 1
    assert gw.fake.webhooks == {}
    assert gateway_part.counts["api_tokens_deleted"] == 1
    assert gateway_part.counts["api_tokens_edited"] == 1

    # A workspace without integrations still gets a job: other services may hold its data.
    empty = await gw.client.delete("/v1/workspaces/ws-never-connected", headers=ADMIN)
    assert empty.status_code == 202
    assert (await gw.client.get(empty.json()["status_url"], headers=ADMIN)).json()["integration_ids"] == []
    assert (await gw.client.delete("/v1/workspaces/bad%20id", headers=ADMIN)).status_code == 400
    assert (await gw.client.delete("/v1/workspaces/ws-gone")).status_code == 401


async def test_broker_down_is_503_and_the_job_is_announced_once_it_is_back(
    database_url: str, own_nats: NatsServer
) -> None:
    nc = await nats.connect(own_nats.url)
    await ensure_all(nc.jetstream())
    await nc.close()
    settings = make_settings(database_url, own_nats.url, CALLSTREAM_GATEWAY_ERASURE_RESUME_SECONDS=0.3)
    async for gw in start_gateway(settings, FakeProvider()):
        iid = (await gw.create_fathom("ws-outage"))["id"]
        own_nats.stop()
        down = await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == str(settings.retry_after_seconds)
        row = await _fetch_row(gw, "select id::text, status from erasure_jobs")  # the job stays
        assert row is not None
        assert row["status"] == "running"
        assert (await gw.deliver(iid, MEETING)).status_code == 404  # erased already

        own_nats.start()
        broker = gw.app.state.runtime.broker
        deadline = time.monotonic() + 15
        while not broker.is_connected:
            assert time.monotonic() < deadline, "the gateway did not reconnect"
            await asyncio.sleep(0.1)
        nc = await nats.connect(own_nats.url)
        try:
            # Nobody sends the DELETE again: the gateway announces the job by itself ...
            while len(events := await _erasure_events(nc.jetstream())) < 2:
                assert time.monotonic() < deadline, "the job was not announced again"
                await asyncio.sleep(0.05)
            assert [(s, i) for s, _, i in events] == [
                (ERASURES_REQUESTED, row["id"]),
                (erasures_finished_subject("gateway"), f"{row['id']}:finished:gateway"),
            ]
            # ... and the same DELETE again answers with that job, announced once.
            later = await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
            assert later.status_code == 202, later.text
            assert later.json()["erasure_id"] == row["id"]
            assert len(await _erasure_events(nc.jetstream())) == 2
        finally:
            await nc.close()


async def _oauth_state(gw: Gateway, **params: str) -> str:
    answer = await gw.client.get(
        "/v1/oauth/fathom/authorize",
        params={"workspace_id": "ws-oauth", **params},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return str(parse_qs(urlsplit(answer.headers["location"]).query)["state"][0])


async def _callback(gw: Gateway, state: str) -> Any:
    code = gw.fake.issue_code("fathom")
    return await gw.client.get("/v1/oauth/fathom/callback", params={"code": code, "state": state})


async def test_an_erased_oauth_integration_is_never_revived_by_connecting_again(gateway: Gateway) -> None:
    gw = gateway
    connected = await _callback(gw, await _oauth_state(gw))
    assert connected.status_code == 200, connected.text
    iid = connected.json()["id"]
    pending = await _oauth_state(gw, integration_id=iid)  # a reconnect started before the erasure
    assert (
        await gw.client.delete(f"/v1/integrations/{iid}", params={"erase": "true"}, headers=ADMIN)
    ).status_code == 202

    assert (await _callback(gw, pending)).status_code == 400  # its state went with it
    refused = await gw.client.get(
        "/v1/oauth/fathom/authorize",
        params={"workspace_id": "ws-oauth", "integration_id": iid},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert refused.status_code == 404
    again = await _callback(gw, await _oauth_state(gw))  # the workspace connects anew: a new integration
    assert again.status_code == 200, again.text
    assert again.json()["id"] != iid
    assert (await gw.client.get(f"/v1/integrations/{iid}", headers=ADMIN)).json()["status"] == "erased"
