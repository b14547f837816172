"""Gong's daily quota counted by every gateway replica together, in a JetStream KV bucket.

Each "replica" here has its own NATS connection, its own limiter registry and its own worker;
only the broker is shared, as between gateway processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, SyncFinished, SyncProgress
from callstream.gateway.pull import (
    CheckpointStore,
    LimiterRegistry,
    ProviderHosts,
    PullWorker,
    QuotaSpent,
    QuotaStore,
    RunDeferred,
)
from callstream.gateway.pull._limits import account_key
from callstream.gateway.pull._quota import seconds_to_next_utc_day
from tests.fakes import serve_in_process
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

BUCKET = "gateway_pull_quota"


@pytest.fixture
async def second_js(nats_url: str) -> AsyncIterator[Any]:
    """Another replica's own connection to the same broker."""
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_two_replicas_never_take_more_than_the_quota_together(jetstream: Any, second_js: Any) -> None:
    replicas = [await QuotaStore.open(js, BUCKET) for js in (jetstream, second_js)]
    quotas = [store.daily("gong:acct", 37) for store in replicas]

    results = await asyncio.gather(*(quotas[i % 2].take() for i in range(120)), return_exceptions=True)
    assert results.count(None) == 37  # exactly the quota: none lost to a race, none over
    refused = [r for r in results if r is not None]
    assert all(isinstance(r, QuotaSpent) for r in refused), refused
    to_midnight = seconds_to_next_utc_day(datetime.now(UTC)) + 60
    assert all(r.delay == pytest.approx(to_midnight, abs=30) for r in refused)  # type: ignore[union-attr]
    assert await quotas[0].used() == 37
    assert await quotas[1].used() == 37
    other = replicas[1].daily("gong:another-account", 37)
    await other.take()
    assert await other.used() == 1  # accounts are counted apart


async def test_the_count_starts_again_on_the_next_utc_day(jetstream: Any) -> None:
    now = [datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)]
    store = await QuotaStore.open(jetstream, BUCKET, clock=lambda: now[0])
    quota = store.daily("gong:acct", 2)
    await quota.take()
    await quota.take()
    with pytest.raises(QuotaSpent) as spent:
        await quota.take()
    assert spent.value.delay == pytest.approx(2 + 60)  # to midnight UTC, and a minute more
    now[0] += timedelta(seconds=3)  # 2026-03-02 00:00:01
    await quota.take()
    assert await quota.used() == 1
    assert quota.key(now[0]).endswith(".20260302")
    assert ":" not in quota.key(now[0])  # a valid KV key


def _replica(harness: Any, js: Any, checkpoints: CheckpointStore, quotas: QuotaStore, settings: Any) -> PullWorker:
    return PullWorker(
        js=js,
        store=harness.store,
        http=harness.http,
        checkpoints=checkpoints,
        settings=settings,
        hosts=ProviderHosts("http://unused", "http://unused"),
        limiters=LimiterRegistry(settings, quotas),
    )


async def test_two_workers_share_the_quota_and_defer_their_runs_to_the_next_utc_day(
    harness: Any, jetstream: Any, second_js: Any
) -> None:
    state = GongState(GongConfig(seed=21, calls=1000, span_days=30))
    state.faults.limits_enabled = False  # only our own limits keep the count here
    quota = 7
    settings = harness.settings_with(gong_requests_per_day=quota, limit_margin=1.0)
    workers = []
    for js in (jetstream, second_js):
        checkpoints = await CheckpointStore.open(js, "gateway_pull_checkpoints", ttl_seconds=3600)
        workers.append(_replica(harness, js, checkpoints, await QuotaStore.open(js, BUCKET), settings))
    async with serve_in_process(gong_app(state)) as url:
        # two integrations on one Gong company (same access key): one account, one quota
        requests = [harness.sync_request("gong", harness.gong_basic(url), "backfill") for _ in workers]
        outcomes = await asyncio.gather(
            *(w.run(r) for w, r in zip(workers, requests, strict=True)), return_exceptions=True
        )
    assert len(state.log.api()) == quota  # both together sent exactly the day's quota, not one more
    assert all(e.status == 200 for e in state.log.api())
    for outcome in outcomes:
        assert isinstance(outcome, QuotaSpent), outcome
        assert outcome.delay == pytest.approx(seconds_to_next_utc_day(datetime.now(UTC)) + 60, abs=30)
    # what was fetched before the quota ran out is published and checkpointed for the next day
    published = len(await harness.raw_calls())
    checkpointed = [await harness.checkpoints.load(r.run_id) for r in requests]
    assert sum(cp.calls_published for cp in checkpointed if cp) == published
    assert published > 0


async def test_a_run_on_a_spent_quota_is_released_for_later_without_touching_gong(harness: Any, jetstream: Any) -> None:
    state = GongState(GongConfig(seed=22, calls=50, span_days=30))
    settings = harness.settings_with(gong_requests_per_day=3, limit_margin=1.0)
    quotas = await QuotaStore.open(jetstream, BUCKET)
    async with serve_in_process(gong_app(state)) as url:
        integration = harness.gong_basic(url)
        # another replica spent the account's quota earlier today
        daily = LimiterRegistry(settings, quotas).gong(account_key("gong", url, "gong-access-key")).daily
        assert daily is not None
        for _ in range(3):
            await daily.take()
        worker = harness.start(settings, limiters=LimiterRegistry(settings, quotas))
        run_id = await harness.request("gong", integration, "backfill")
        for _ in range(100):
            info = await jetstream.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
            if info.num_ack_pending == 1 and info.num_pending == 0 and info.delivered.consumer_seq >= 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert worker.running == set()  # the run is over here: released, not held
        assert state.log.api() == []  # Gong was never asked
        info = await jetstream.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
        assert info.num_ack_pending == 1  # nak'd with a delay: JetStream holds it for the next day
        assert info.num_redelivered == 0
        events = await harness.events(run_id)
        assert not [e for e in events if isinstance(e, SyncFinished)]
        # the scheduler hears that the run waits, and until when, so it is not failed as stale
        [waiting] = [e for e in events if isinstance(e, SyncProgress) and e.resume_after is not None]
        expected = datetime.now(UTC) + timedelta(seconds=seconds_to_next_utc_day(datetime.now(UTC)) + 60)
        assert abs((waiting.resume_after - expected).total_seconds()) < 30
        assert waiting.waiting_for is not None
        assert "quota" in waiting.waiting_for
        with pytest.raises(RunDeferred):
            await daily.take()
