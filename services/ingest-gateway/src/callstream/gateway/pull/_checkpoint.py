"""Where a run keeps its place: a JetStream key-value bucket, one key per run.

Why a KV bucket and not a gateway table or the ``SyncProgress`` stream: the checkpoint is written
after every page by whichever replica holds the run, next to the publishes it vouches for, so it
lives on the same broker (no database on the pull path, no migration shared with the webhook side);
a redelivered run reads it back by key in one round trip, where finding the last ``SyncProgress``
of a run would mean scanning ``sync.events.<provider>``. Keys expire with the bucket's TTL.
The same checkpoint also travels in every ``SyncProgress`` for the scheduler to see.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

_KEY = re.compile(r"^[-_=A-Za-z0-9]{1,128}$")


class LatestCandidate(msgspec.Struct, array_like=True):
    """One of the newest calls a ``latest`` run has found so far (its bytes are fetched again by id
    if the run resumes elsewhere, so the checkpoint stays small)."""

    started: datetime
    id: str


class Checkpoint(msgspec.Struct, kw_only=True):
    """A run's place: its fixed window, the cursor of the next page, and what is done.

    A Gong ``latest`` run walks back in bands from ``window_end`` (fixed at its start): ``band`` is
    the band it is reading, ``cursor`` its next page and ``candidates`` the newest calls so far."""

    v: int = 1
    window_start: datetime | None = None
    window_end: datetime | None = None
    cursor: str | None = None
    pages: int = 0
    calls_published: int = 0
    calls_already_received: int = 0  # of calls_published: JetStream had them already (duplicates)
    restarts: int = 0
    finished: bool = False
    status: str | None = None
    error: str | None = None
    band: int = 0
    failures: int = 0  # deliveries that ended in a failure; the run gives up at the worker's limit
    candidates: list[LatestCandidate] = []
    # Whose run this is: an erasure finds an integration's checkpoints by it (keys are per run).
    integration_id: str | None = None

    def encode(self) -> str:
        return msgspec.json.encode(self).decode()


class Listing(msgspec.Struct, kw_only=True):
    """What a reconciling run has listed so far (kept apart from the checkpoint, which travels in
    every ``SyncProgress``): every call id the provider listed, and when the listing began. Not
    ``complete`` once a listed call's id could not be read: such a listing never judges deletions."""

    started_at: datetime
    ids: list[str] = []
    gone: list[str] = []  # listed, but their recording answered 404
    complete: bool = True
    # Fathom: the content pass is done, and where the second, ids-only pass over the window is.
    paged: bool = False
    recheck_cursor: str | None = None
    rechecked: bool = False
    integration_id: str | None = None  # whose listing: an erasure finds it by this (provider call ids)


class _Owner(msgspec.Struct):
    """What an erasure reads of any entry of the bucket (a checkpoint or a listing)."""

    integration_id: str | None = None


_decoder = msgspec.json.Decoder(Checkpoint)
_listing = msgspec.json.Decoder(Listing)
_owner = msgspec.json.Decoder(_Owner)
# Reads in flight while an erasure looks through the bucket (one read per key: ~2,000 keys a
# second one at a time, measured on the dev stack; a week of runs can be far more).
SCAN_CONCURRENCY = 64


def checkpoint_key(run_id: str) -> str:
    return run_id if _KEY.match(run_id) else "h-" + hashlib.sha256(run_id.encode()).hexdigest()[:40]


class CheckpointStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext | None = None, bucket: str | None = None) -> None:
        self._kv = kv
        self._js = js  # with the bucket's name: what an erasure lists the keys with
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, ttl_seconds: float, replicas: int = 1) -> CheckpointStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=ttl_seconds,
                    replicas=replicas,
                    description="ingest-gateway: where each pull run stopped",
                )
            )
        return cls(kv, js, bucket)

    async def load(self, run_id: str) -> Checkpoint | None:
        try:
            entry = await self._kv.get(checkpoint_key(run_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return _decoder.decode(entry.value)
        except msgspec.DecodeError:
            return None  # unreadable: start the run over (publishes are idempotent)

    async def save(self, run_id: str, checkpoint: Checkpoint) -> None:
        await self._kv.put(checkpoint_key(run_id), msgspec.json.encode(checkpoint))

    async def load_listing(self, run_id: str) -> Listing | None:
        try:
            entry = await self._kv.get(checkpoint_key(run_id) + "-listed")
        except KeyNotFoundError:
            return None
        try:
            return _listing.decode(entry.value) if entry.value else None
        except msgspec.DecodeError:  # unreadable: what the earlier pages listed is unknown
            return Listing(started_at=datetime.now(UTC), complete=False)

    async def save_listing(self, run_id: str, listing: Listing) -> None:
        await self._kv.put(checkpoint_key(run_id) + "-listed", msgspec.json.encode(listing))

    async def forget(self, run_id: str) -> None:
        """Purge a run's checkpoint and listing (its integration was erased while it ran)."""
        key = checkpoint_key(run_id)
        await self._kv.purge(key)
        await self._kv.purge(key + "-listed")

    async def forget_integrations(self, integration_ids: Iterable[str]) -> int:
        """Purge every checkpoint and listing of these integrations (an erasure); how many keys.

        Keys are per run: the bucket's keys are listed (its stream's subjects: the gateway may read
        stream metadata, not consume its buckets with a watcher) and each entry read, and those
        naming one of the integrations are purged. Entries written before checkpoints named their
        integration are not found; they expire with the bucket's TTL."""
        wanted = set(integration_ids)
        if not wanted:
            return 0
        if self._js is None or self._bucket is None:
            raise RuntimeError("forget_integrations needs a store made by CheckpointStore.open")
        prefix = f"$KV.{self._bucket}."
        info = await self._js.stream_info(f"KV_{self._bucket}", subjects_filter=prefix + ">")
        keys = [subject[len(prefix) :] for subject in (info.state.subjects or {})]
        reading = asyncio.Semaphore(SCAN_CONCURRENCY)

        async def forget_if_theirs(key: str) -> bool:
            async with reading:
                try:
                    entry = await self._kv.get(key)
                except (KeyNotFoundError, KeyDeletedError):  # purged or deleted already, or expired
                    return False
                if not entry.value:
                    return False
                try:
                    owner = _owner.decode(entry.value).integration_id
                except msgspec.DecodeError:
                    return False
                if owner not in wanted:
                    return False
                await self._kv.purge(key)
                return True

        return sum(await asyncio.gather(*(forget_if_theirs(key) for key in keys)))
