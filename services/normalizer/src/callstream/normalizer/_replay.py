"""``replay --since <time|seq>``: re-derive messages from the raw events kept in ``CALLS_RAW``
(after a mapping fix). It goes through the same store, so it is idempotent and emits events only
for messages that really change; older raw events of a message lose to the newest one as usual."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg
import nats
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from callstream.contracts import CALLS_RAW, DEFAULT_LINK_ALLOW_LIST, HostAllowList
from callstream.runtime import backoff_delay, connect_nats, create_pool, get_logger

from ._errors import is_transient
from ._mapped import MappedMessage, UnmappableError
from ._mapping import map_raw_call
from ._settings import Settings
from ._store import store_batch

log = get_logger(__name__)
MAX_ATTEMPTS = 8


@dataclass
class ReplayReport:
    read: int = 0
    changed: int = 0
    unchanged: int = 0
    unmappable: int = 0


def parse_since(value: str) -> int | datetime:
    """A stream sequence (digits) or an ISO 8601 time (UTC when it has no offset)."""
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since {value!r} is neither a stream sequence nor an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _consumer_config(since: int | datetime) -> ConsumerConfig:
    start = (
        {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": since}
        if isinstance(since, int)
        else {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": since}
    )
    return ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        inactive_threshold=60.0,
        mem_storage=True,
        max_ack_pending=10_000,
        **start,  # type: ignore[arg-type]
    )


async def _store_with_retry(pool: asyncpg.Pool, mapped: list[MappedMessage]) -> int:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn:
                return len(await store_batch(conn, mapped))
        except Exception as exc:
            if not is_transient(exc) or attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(backoff_delay(attempt, 0.5, 10.0))
    raise AssertionError("unreachable")


async def replay(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    since: int | datetime,
    batch: int = 100,
    links: HostAllowList = DEFAULT_LINK_ALLOW_LIST,
) -> ReplayReport:
    report = ReplayReport()
    last_seq = (await js.stream_info(CALLS_RAW)).state.last_seq
    sub = await js.pull_subscribe("calls.raw.>", stream=CALLS_RAW, config=_consumer_config(since))
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2.0)
            except nats.errors.TimeoutError:
                break  # nothing left
            mapped: list[MappedMessage] = []
            for msg in msgs:
                try:
                    mapped.append(map_raw_call(msg.data, links))
                except UnmappableError:
                    report.unmappable += 1
            changed = await _store_with_retry(pool, mapped) if mapped else 0
            report.read += len(msgs)
            report.changed += changed
            report.unchanged += len(mapped) - changed
            await asyncio.gather(*(m.ack() for m in msgs))
            if msgs[-1].metadata.sequence.stream >= last_seq or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return report


async def run_replay(settings: Settings, since_text: str) -> dict[str, int]:
    since = parse_since(since_text)
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=2)
    nc = await connect_nats(settings, "normalizer-cli")
    try:
        report = await replay(pool, nc.jetstream(), since, settings.batch_size, settings.link_allow_list)
    finally:
        await nc.close()
        await pool.close()
    log.info("replay finished", **asdict(report))
    return asdict(report)
