"""datapoints.recorded into data_points, on real PostgreSQL and JetStream: idempotent per
(message, key, feature, extractor name); a newer extractor version replaces, an older never does."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from normalizer_itkit import settings_for, stream_messages

from callstream.contracts import (
    DATAPOINTS,
    DATAPOINTS_RECORDED,
    DLQ,
    NORMALIZER_DATAPOINTS_CONSUMER,
    DataPointRecorded,
    DeadLetter,
    Evidence,
    Extractor,
)
from callstream.normalizer import build_app
from callstream.normalizer._data_points import handle_data_point_msg
from callstream.normalizer._dlq import entries

T0 = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


async def _message(pool: Any, workspace_id: str = "acme") -> uuid.UUID:
    return await pool.fetchval(
        "insert into messages (workspace_id, source, external_id, content_hash) values ($1, 'fathom', $2, 'h')"
        " returning id",
        workspace_id,
        secrets.token_hex(4),
    )


def _point(message_id: uuid.UUID, version: str, value: float, *, at: datetime = T0, **kw: Any) -> DataPointRecorded:
    fields: dict[str, Any] = {
        "event_id": f"dp-{version}-{value}-{kw.get('feature_id')}-{kw.get('key', 'mrr')}",
        "workspace_id": "acme",
        "message_id": str(message_id),
        "source": "fathom",
        "external_id": "884120457",
        "key": "mrr",
        "category": "revenue",
        "numeric_value": value,
        "evidence": Evidence(t=478.5, quote="about twelve hundred a month"),
        "extractor": Extractor(name="revenue", version=version),
        "recorded_at": at,
    }
    return DataPointRecorded(**(fields | kw))


async def _handle_all(pool: Any, js: Any, points: list[DataPointRecorded]) -> None:
    for point in points:
        await js.publish(DATAPOINTS_RECORDED, msgspec.json.encode(point))
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_DATAPOINTS_CONSUMER.durable, stream=DATAPOINTS)
    for msg in await sub.fetch(len(points), timeout=2):
        assert await handle_data_point_msg(pool, js, msg)
    await sub.unsubscribe()


async def _rows(pool: Any) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "select data_point_key, feature_id, extractor_version, numeric_value, integer_value, text_value"
        " from data_points order by data_point_key, feature_id nulls first"
    )
    return [tuple(r) for r in rows]


async def test_idempotent_and_newer_versions_replace(pool: Any, nc: Any) -> None:
    js = nc.jetstream()
    m = await _message(pool)
    first = _point(m, "1.9", 100.0)
    await _handle_all(pool, js, [first, first])  # the same event twice: one row
    assert await _rows(pool) == [("mrr", None, "1.9", 100.0, None, None)]
    created = await pool.fetchval("select updated_at from data_points")

    # an older version never replaces a newer one; 1.10 is newer than 1.9 (numbers, not text)
    await _handle_all(pool, js, [_point(m, "1.10", 200.0), _point(m, "1.2", 50.0, at=T0 + timedelta(hours=1))])
    assert await _rows(pool) == [("mrr", None, "1.10", 200.0, None, None)]
    assert await pool.fetchval("select updated_at from data_points") > created
    # the same version, corrected later, replaces; the earlier one arriving late does not
    await _handle_all(pool, js, [_point(m, "v1.10.0", 210.0, at=T0 + timedelta(minutes=5))])
    await _handle_all(pool, js, [_point(m, "1.10", 205.0, at=T0 + timedelta(minutes=1))])
    assert await _rows(pool) == [("mrr", None, "v1.10.0", 210.0, None, None)]

    # another feature, key or extractor is another data point; features are created as needed
    await _handle_all(
        pool,
        js,
        [
            _point(m, "1", 1.0, feature_id="sso"),
            _point(m, "1", 0.0, key="urgency_score", numeric_value=None, integer_value=7),
            _point(
                m,
                "1",
                0.0,
                key="champion",
                numeric_value=None,
                text_value="Priya",
                extractor=Extractor(name="people", version="3"),
            ),
        ],
    )
    assert await _rows(pool) == [
        ("champion", None, "3", None, None, "Priya"),
        ("mrr", None, "v1.10.0", 210.0, None, None),
        ("mrr", "sso", "1", 1.0, None, None),
        ("urgency_score", None, "1", None, 7, None),
    ]
    assert await pool.fetchval("select count(*) from features where workspace_id = 'acme' and id = 'sso'") == 1
    evidence = await pool.fetchrow("select evidence_t, evidence_quote from data_points where feature_id = 'sso'")
    assert tuple(evidence) == (478.5, "about twelve hundred a month")


async def test_unusable_data_points_are_dead_lettered(pool: Any, nc: Any) -> None:
    js = nc.jetstream()
    m = await _message(pool, "globex")
    # another workspace's message, a message that does not exist, a body that is no data point
    await js.publish(DATAPOINTS_RECORDED, msgspec.json.encode(_point(m, "1", 1.0)))
    await js.publish(DATAPOINTS_RECORDED, msgspec.json.encode(_point(uuid.uuid4(), "1", 1.0)))
    await js.publish(DATAPOINTS_RECORDED, b'{"v": 1, "key": "mrr"}')
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_DATAPOINTS_CONSUMER.durable, stream=DATAPOINTS)
    for msg in await sub.fetch(3, timeout=2):
        assert await handle_data_point_msg(pool, js, msg)
    assert await pool.fetchval("select count(*) from data_points") == 0
    letters = [msgspec.json.decode(x.data, type=DeadLetter) for x in await stream_messages(js, DLQ)]
    assert [letter.consumer for letter in letters] == ["normalizer-datapoints"] * 3
    assert "no message" in letters[0].error
    # the normalizer's dlq command lists them (and can redrive them once the cause is mended)
    assert [letter.subject for _, letter in await entries(js)] == [DATAPOINTS_RECORDED] * 3


async def test_the_service_stores_data_points(pool: Any, nc: Any, database_url: str, nats_url: str) -> None:
    """The worker as the service runs it: under the runtime's supervisor, on its durable consumer."""
    m = await _message(pool)
    app = build_app(settings_for(database_url, nats_url))
    async with AsyncTestClient(app):
        js = nc.jetstream()
        await js.publish(DATAPOINTS_RECORDED, msgspec.json.encode(_point(m, "2", 42.0)))
        deadline = asyncio.get_running_loop().time() + 15
        while await pool.fetchval("select count(*) from data_points") == 0:
            assert asyncio.get_running_loop().time() < deadline, "the data point was never stored"
            await asyncio.sleep(0.05)
    assert await _rows(pool) == [("mrr", None, "2", 42.0, None, None)]


async def test_a_point_for_a_tombstone_is_dropped(pool: Any, nc: Any) -> None:
    """A data point recorded just before its message became a tombstone and stored after (the
    consumer lagging): its evidence is transcript text, so it is dropped, not stored on the
    tombstone (whose points were erased) nor dead-lettered with its quote."""
    message_id = await _message(pool)
    await pool.execute(
        "update messages set deleted_at = now(), deleted_reason = 'provider_deleted' where id = $1", message_id
    )
    await _handle_all(pool, nc.jetstream(), [_point(message_id, "1.0", 1200)])
    assert await _rows(pool) == []
    assert await entries(nc.jetstream()) == []


async def test_a_point_for_an_erased_message_is_dropped(pool: Any, nc: Any) -> None:
    """The same for a message erased (issue #19, section 2): its row is gone, and the point is
    dropped rather than dead-lettered with its quote; a point for an id never stored is still
    dead-lettered (bad input)."""
    message_id = await _message(pool)
    await pool.execute("delete from messages where id = $1", message_id)
    await pool.execute(
        "insert into normalizer_erased_messages (message_id, erasure_id) values ($1, 'er-1')", message_id
    )
    await _handle_all(pool, nc.jetstream(), [_point(message_id, "1.0", 1200)])
    assert await _rows(pool) == []
    assert await entries(nc.jetstream()) == []
    await _handle_all(pool, nc.jetstream(), [_point(uuid.uuid4(), "1.0", 1200)])
    assert len(await entries(nc.jetstream())) == 1
