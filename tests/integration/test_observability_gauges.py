"""The gauges behind the dashboards and alerts read the truth from the real servers: JetStream
consumer lag and dead letters, the normalizer's outbox, the scheduler's runs and the gateway's
integrations (each read function is what the service's background worker calls)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from callstream.contracts import NORMALIZER_CONSUMER, NORMALIZER_FEATURES_CONSUMER
from callstream.gateway._gauges import read_integrations
from callstream.gateway.pull._quota import QuotaSpent, QuotaStore
from callstream.normalizer._backlog import read_outbox
from callstream.runtime._backlog import read_backlog
from callstream.scheduler._gauges import read_runs


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield p
    finally:
        await p.close()


async def test_consumer_lag_and_dead_letters_come_from_jetstream(jetstream) -> None:
    for i in range(3):
        await jetstream.publish("calls.raw.fathom", b"{}", headers={"Nats-Msg-Id": f"lag-{i}"})
    for _ in range(2):
        await jetstream.publish("dlq.normalizer", b"{}")
    await jetstream.publish("dlq.scheduler", b"{}")  # another service's: not counted here
    subjects = ("dlq.normalizer", "dlq.normalizer-features")
    consumers = (NORMALIZER_CONSUMER, NORMALIZER_FEATURES_CONSUMER)
    # the registry is the process's: another test may have read the scheduler's DLQ before
    scheduler_before = value("callstream_dlq_messages", subject="dlq.scheduler")

    await read_backlog(jetstream, consumers, subjects)
    raw = {"stream": "CALLS_RAW", "consumer": "normalizer"}
    assert value("callstream_jetstream_consumer_pending", **raw) == 3
    assert value("callstream_jetstream_consumer_ack_pending", **raw) == 0
    assert value("callstream_dlq_messages", subject="dlq.normalizer") == 2
    assert value("callstream_dlq_messages", subject="dlq.normalizer-features") == 0
    assert value("callstream_dlq_messages", subject="dlq.scheduler") == scheduler_before  # not this reader's

    sub = await jetstream.pull_subscribe_bind("normalizer", stream="CALLS_RAW")
    (msg,) = await sub.fetch(1, timeout=5)  # delivered, not acknowledged
    await read_backlog(jetstream, consumers, subjects)
    assert value("callstream_jetstream_consumer_pending", **raw) == 2
    assert value("callstream_jetstream_consumer_ack_pending", **raw) == 1
    await msg.ack()


async def test_outbox_backlog_counts_unpublished_rows_and_the_oldest_age(pool: asyncpg.Pool) -> None:
    await read_outbox(pool)
    assert value("callstream_normalizer_outbox_unpublished") == 0
    assert value("callstream_normalizer_outbox_oldest_unpublished_age_seconds") == 0
    await pool.execute(
        "insert into outbox (subject, payload, created_at, published_at) values"
        " ('messages.upserted.fathom', '\\x00', now() - interval '90 seconds', null),"
        " ('messages.upserted.fathom', '\\x00', now() - interval '10 seconds', null),"
        " ('messages.upserted.fathom', '\\x00', now() - interval '1 hour', now())"
    )
    await read_outbox(pool)
    assert value("callstream_normalizer_outbox_unpublished") == 2
    age = value("callstream_normalizer_outbox_oldest_unpublished_age_seconds")
    assert age is not None
    assert 89 <= age < 120


async def _sync_state(pool: asyncpg.Pool, now: datetime, *, failures: int = 0) -> uuid.UUID:
    integration = uuid.uuid4()
    await pool.execute(
        "insert into sync_state (integration_id, workspace_id, provider, status, cadence_anchor, next_due_at,"
        " consecutive_failures, created_at, updated_at) values ($1, 'acme', 'gong', $2, $3, $3, $4, $3, $3)",
        integration,
        "error" if failures else "success",
        now,
        failures,
    )
    return integration


async def _run(pool: asyncpg.Pool, integration: uuid.UUID, status: str, created: datetime, **times: datetime) -> None:
    columns = ", ".join(times)
    params = ", ".join(f"${i}" for i in range(5, 5 + len(times)))
    await pool.execute(
        f"insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at"
        f"{', ' + columns if times else ''}) values ($1, $2, 'acme', 'gong', 'incremental', 'schedule', $3, $4"
        f"{', ' + params if times else ''})",
        uuid.uuid4(),
        integration,
        status,
        created,
        *times.values(),
    )


async def test_run_gauges_name_failing_integrations_and_runs_that_do_not_move(pool: asyncpg.Pool) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    failing = await _sync_state(pool, now, failures=4)
    stuck = await _sync_state(pool, now)
    waiting = await _sync_state(pool, now)
    await _run(pool, stuck, "running", now - timedelta(hours=1), last_progress_at=now - timedelta(seconds=2000))
    # Waits on purpose until tomorrow (a spent quota): not idle.
    await _run(pool, waiting, "running", now - timedelta(hours=1), resume_after=now + timedelta(hours=12))
    await _run(pool, failing, "error", now - timedelta(minutes=20), finished_at=now - timedelta(minutes=10))
    await _run(pool, waiting, "success", now - timedelta(minutes=50), finished_at=now - timedelta(minutes=40))
    await _run(pool, waiting, "success", now - timedelta(hours=3), finished_at=now - timedelta(hours=2))

    await read_runs(pool, now)
    who = {"workspace_id": "acme", "provider": "gong"}
    assert value("callstream_scheduler_integration_consecutive_failures", integration_id=str(failing), **who) == 4
    assert value("callstream_scheduler_integration_consecutive_failures", integration_id=str(stuck), **who) is None
    idle = "callstream_scheduler_run_idle_seconds"
    assert value(idle, integration_id=str(stuck), status="running", **who) == pytest.approx(2000)
    assert value(idle, integration_id=str(waiting), status="running", **who) == 0
    assert value("callstream_scheduler_active_runs", provider="gong", status="running") == 2
    finished = "callstream_scheduler_runs_finished_last_hour"
    assert value(finished, provider="gong", status="error") == 1
    assert value(finished, provider="gong", status="success") == 1
    assert value("callstream_scheduler_integrations", provider="gong", status="error") == 1
    assert value("callstream_scheduler_integrations", provider="gong", status="success") == 2

    # Recovered: its series goes away instead of keeping the last count.
    await pool.execute("update sync_state set consecutive_failures = 0 where integration_id = $1", failing)
    await read_runs(pool, now)
    assert value("callstream_scheduler_integration_consecutive_failures", integration_id=str(failing), **who) is None


async def test_integration_gauges_list_the_ones_waiting_for_reauthorisation(pool: asyncpg.Pool) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for integration, status in zip(ids, ("active", "reauth_required", "active"), strict=True):
        await pool.execute(
            "insert into integrations (id, workspace_id, provider, status, auth_kind) values ($1, 'acme', 'gong', $2, 'oauth')",
            integration,
            status,
        )
    await read_integrations(pool)
    assert value("callstream_gateway_integrations", provider="gong", status="active") == 2
    assert value("callstream_gateway_integrations", provider="gong", status="reauth_required") == 1
    reauth = "callstream_gateway_integration_reauth_required"
    assert value(reauth, integration_id=str(ids[1]), workspace_id="acme", provider="gong") == 1
    assert value(reauth, integration_id=str(ids[0]), workspace_id="acme", provider="gong") is None


async def test_quota_left_follows_the_shared_daily_count(jetstream) -> None:
    quotas = await QuotaStore.open(jetstream, "observability-quota")
    quota = quotas.daily("gong:abc123", 3)
    left = "callstream_gateway_pull_quota_left"
    await quota.take()
    assert value(left, account="gong:abc123") == 2
    await quotas.daily("gong:abc123", 3).take()  # another replica's count of the same account
    await quota.take()
    assert value(left, account="gong:abc123") == 0
    with pytest.raises(QuotaSpent):
        await quota.take()
    assert value(left, account="gong:abc123") == 0
