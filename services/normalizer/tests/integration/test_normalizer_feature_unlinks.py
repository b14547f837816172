"""``features.unlinked``: stored like a link (in stream order, through the same consumer), idempotent,
and read by a consumer declared before unlinks existed."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from nats.js.api import AckPolicy, ConsumerConfig
from normalizer_itkit import NormalizerProcess, stream_messages, wait_until

from callstream.contracts import (
    DLQ,
    FEATURES,
    FEATURES_LINKED,
    FEATURES_UNLINKED,
    NORMALIZER_FEATURES_CONSUMER,
    FeatureLinked,
    FeatureUnlinked,
    MessageRef,
)
from callstream.normalizer._features import handle_feature_msg


def _link(feature: str, **ref: str) -> bytes:
    return msgspec.json.encode(FeatureLinked(workspace_id="ws1", feature_id=feature, message=MessageRef(**ref)))


def _unlink(feature: str, **ref: str) -> bytes:
    return msgspec.json.encode(FeatureUnlinked(workspace_id="ws1", feature_id=feature, message=MessageRef(**ref)))


async def _message(pool, external_id: str) -> uuid.UUID:
    return await pool.fetchval(
        "insert into messages (workspace_id, source, external_id, content_hash) values ('ws1', 'gong', $1, 'h')"
        " returning id",
        external_id,
    )


async def _links(pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch("select feature_id, external_id, message_id from message_features order by 1, 2")
    return [
        (r["feature_id"], r["external_id"], None if r["message_id"] is None else str(r["message_id"])) for r in rows
    ]


async def test_an_unlink_deletes_the_link_once_and_moves_the_feature(pool, nc) -> None:
    js = nc.jetstream()
    mid = await _message(pool, "1")
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_FEATURES_CONSUMER.durable, stream=FEATURES)

    async def handle(subject: str, data: bytes) -> None:
        await js.publish(subject, data)
        [msg] = await sub.fetch(1, timeout=2)
        assert await handle_feature_msg(pool, js, msg)

    await handle(FEATURES_LINKED, _link("f1", source="gong", external_id="1"))
    await handle(FEATURES_LINKED, _link("f1", source="gong", external_id="not-yet"))
    assert await _links(pool) == [("f1", "1", str(mid)), ("f1", "not-yet", None)]
    before = await pool.fetchval("select updated_at from features where id = 'f1'")

    await handle(FEATURES_UNLINKED, _unlink("f1", message_id=str(mid)))
    assert await _links(pool) == [("f1", "not-yet", None)]
    moved = await pool.fetchval("select updated_at from features where id = 'f1'")
    assert moved > before
    # A message that has not arrived yet is unlinked by its provider identity.
    await handle(FEATURES_UNLINKED, _unlink("f1", source="gong", external_id="not-yet"))
    assert await _links(pool) == []
    moved_again = await pool.fetchval("select updated_at from features where id = 'f1'")
    assert moved_again > moved

    # Unlinking what is not linked, an unknown feature or a message that is gone: nothing changes,
    # nothing is dead-lettered.
    await handle(FEATURES_UNLINKED, _unlink("f1", message_id=str(mid)))
    await handle(FEATURES_UNLINKED, _unlink("nope", source="gong", external_id="1"))
    await handle(FEATURES_UNLINKED, _unlink("f1", message_id=str(uuid.uuid4())))
    assert await pool.fetchval("select updated_at from features where id = 'f1'") == moved_again
    assert await pool.fetchval("select count(*) from features") == 1
    assert await stream_messages(js, DLQ) == []

    # An unlink naming no message is unusable: dead-lettered, never retried.
    await handle(FEATURES_UNLINKED, _unlink("f1"))
    [letter] = await stream_messages(js, DLQ)
    assert b"neither by id" in letter.data


async def test_link_unlink_link_in_stream_order_ends_linked(
    database_url, nats_url, nc, pool, tmp_path, normalizer_processes
):
    """On a running normalizer, and with its consumer declared the old way (``features.linked``
    only), as a deployment from before unlinks has it: the filter is widened in place."""
    js = nc.jetstream()
    await js.delete_consumer(FEATURES, NORMALIZER_FEATURES_CONSUMER.durable)
    await js.add_consumer(
        FEATURES,
        ConsumerConfig(
            durable_name=NORMALIZER_FEATURES_CONSUMER.durable,
            filter_subject=FEATURES_LINKED,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=7,  # an operator's tuning, kept
        ),
    )
    mid = await _message(pool, "1")
    for subject, data in (
        (FEATURES_LINKED, _link("f1", source="gong", external_id="1")),
        (FEATURES_UNLINKED, _unlink("f1", source="gong", external_id="1")),
        (FEATURES_LINKED, _link("f1", message_id=str(mid))),
        (FEATURES_LINKED, _link("f2", source="gong", external_id="1")),
        (FEATURES_UNLINKED, _unlink("f2", message_id=str(mid))),
    ):
        await js.publish(subject, data)
    normalizer_processes.append(NormalizerProcess(database_url, nats_url, tmp_path / "n.log").start())

    async def settled() -> bool:
        info = await js.consumer_info(FEATURES, NORMALIZER_FEATURES_CONSUMER.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq == 5

    await wait_until(settled, timeout=30)
    assert await _links(pool) == [("f1", "1", str(mid))]
    info = await js.consumer_info(FEATURES, NORMALIZER_FEATURES_CONSUMER.durable)
    assert (info.config.filter_subject, info.config.max_deliver) == ("features.>", 7)
    await asyncio.sleep(0)
