"""A provider's daily request quota counted by every gateway replica together (Gong: 10,000 a day
per company, gong.md §5.1), in a JetStream key-value bucket the replicas already share.

One key per provider account and UTC day holds the number of requests taken so far. A request
is taken with a compare-and-set on the key's revision (``create`` for the first of the day,
``update(last=revision)`` after), so two replicas can never both take the last one: the loser
sees a wrong-revision error, reads again and finds the quota spent. Every attempt counts,
retries included, because the provider counts them too. When the count is at the quota the run
is deferred to the next UTC day (Gong's own 429 ``Retry-After`` still wins if it comes first).

Why not a library: the rate limiters on the package index (aiolimiter, limits, pyrate-limiter)
keep their counts in memory, Redis, Memcached, MongoDB or SQL; none has a NATS backend, and a
Redis only for this would be a new server to run. The compare-and-set loop is a dozen lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from .._gauges import QUOTA_LEFT
from ._errors import RunDeferred

Clock = Callable[[], datetime]
_UNSAFE = re.compile(r"[^-_A-Za-z0-9]")
CONTENDED_TRIES = 100  # compare-and-set rounds before giving up (only under heavy contention)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def seconds_to_next_utc_day(now: datetime) -> float:
    now = now.astimezone(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return (midnight - now).total_seconds()


class QuotaSpent(RunDeferred):
    """The account's requests for today are all taken; the run waits for the next UTC day."""


@dataclass
class DailyQuota:
    """The shared count of one account: ``take()`` before every request."""

    kv: KeyValue
    account: str  # an ``account_key`` (no secret in it)
    allowed: int
    clock: Clock = _utcnow
    resume_margin_seconds: float = 60.0  # redeliver a little after midnight, not on the stroke
    retry_delay: float = 30.0  # when the broker cannot count

    def key(self, now: datetime) -> str:
        return f"{_UNSAFE.sub('_', self.account)}.{now.astimezone(UTC):%Y%m%d}"

    async def used(self) -> int:
        try:
            entry = await self.kv.get(self.key(self.clock()))
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def take(self) -> None:
        for _ in range(CONTENDED_TRIES):
            now = self.clock()
            key = self.key(now)
            try:
                try:
                    entry = await self.kv.get(key)
                except KeyNotFoundError:
                    await self.kv.create(key, b"1")
                    QUOTA_LEFT.labels(self.account).set(self.allowed - 1)
                    return
                count = int(entry.value or b"0")
                if count >= self.allowed:
                    QUOTA_LEFT.labels(self.account).set(0)
                    raise QuotaSpent(
                        f"the daily request quota ({self.allowed}) shared by every replica is spent",
                        seconds_to_next_utc_day(now) + self.resume_margin_seconds,
                    )
                await self.kv.update(key, str(count + 1).encode(), last=entry.revision)
                QUOTA_LEFT.labels(self.account).set(self.allowed - count - 1)
                return
            except KeyWrongLastSequenceError:
                continue  # another replica took one in between: read again
            except RunDeferred:
                raise
            except Exception as exc:  # the broker cannot count for us: do not guess, come back later
                raise RunDeferred(f"could not count the daily quota: {type(exc).__name__}", self.retry_delay) from None
        raise RunDeferred("the daily quota counter is too contended", 5.0)


@dataclass
class QuotaStore:
    """The bucket, and one ``DailyQuota`` per account on demand."""

    kv: KeyValue
    clock: Clock = _utcnow

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, replicas: int = 1, clock: Clock = _utcnow) -> QuotaStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=2 * 86_400.0,  # yesterday's count is still readable; older days go away
                    replicas=replicas,
                    description="ingest-gateway: provider requests per account and UTC day, and each account's pace",
                )
            )
        return cls(kv, clock)

    def daily(self, account: str, allowed: int, *, retry_delay: float = 30.0) -> DailyQuota:
        return DailyQuota(self.kv, account, allowed, self.clock, retry_delay=retry_delay)
