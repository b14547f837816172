"""The pull worker: takes ``sync.requested.*`` from the SYNC work queue and runs each request.

Any number of gateway replicas share the durable consumer. A run keeps its lease with
in-progress acks and is acknowledged only when it finished or failed for good (after its
``SyncFinished`` is published); a run that cannot go on now is released with a delay and resumes
from its checkpoint wherever it is redelivered. A replica that dies simply stops renewing the
lease, and JetStream hands the run to another one after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

import httpx
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter

from callstream.contracts import GATEWAY_PULL_CONSUMER, SyncFinished, SyncProgress, SyncRequested
from callstream.runtime import SpanKind, ensure_consumer, get_logger, tracing

from .._integrations import HostNotAllowed, IntegrationAccess, ReauthRequired, RefreshFailed
from ._breaker import BreakerRegistry, host_of
from ._checkpoint import Checkpoint, CheckpointStore, Listing
from ._errors import (
    IntegrationErased,
    ProviderUnavailable,
    ReauthNeeded,
    RunDeferred,
    RunFailed,
    RunPaused,
    RunWithdrawn,
)
from ._fair import FairShare, slots_per_host
from ._fathom import FathomClient, fathom_api_root
from ._gong import GongClient, gong_api_root
from ._http import Headers, ProviderHttp
from ._latest import run_gong_latest
from ._limits import LimiterRegistry, account_key
from ._pace import PaceDeferred
from ._publish import Publisher, utcnow
from ._quota import QuotaSpent
from ._runs import Run, run_fathom, run_gong
from ._settings import PullSettings
from ._shapes import new_traceparent
from ._windows import run_window
from ._withdrawn import request_withdrawn

log = get_logger(__name__)

RELEASED = Counter(
    "callstream_gateway_pull_runs_released_total",
    "Pull runs released to be redelivered later, by what they wait for",
    ["provider", "reason"],
)
DEFAULT_LATEST = 10
PARKED_LOOK_SECONDS = 0.1
_request = msgspec.json.Decoder(SyncRequested)


class IntegrationSource(Protocol):
    """What the worker needs of ``callstream.gateway._integrations.IntegrationStore``."""

    async def access(self, integration_id: str) -> IntegrationAccess | None: ...

    async def refreshed(self, integration_id: str, stale_access_token: str | None) -> IntegrationAccess: ...


def _reason(deferred: RunDeferred) -> str:
    """A label of few values: what the run waits for."""
    if isinstance(deferred, ProviderUnavailable):
        return "provider_unavailable"
    if isinstance(deferred, QuotaSpent):
        return "daily_quota"
    if isinstance(deferred, PaceDeferred):
        return "pace"
    return "other"  # a long Retry-After, the broker, the store, the gateway stopping
    # ("failing_host": a request given back unstarted while its host fails, see ``_give_back``)


@dataclass(frozen=True, slots=True)
class _Parked:
    msg: Msg
    lease: asyncio.Task[None]
    since: float = field(default_factory=time.monotonic)


def _parked_since(cutoff: float, parked: _Parked) -> bool:
    return parked.since > cutoff


@dataclass(frozen=True, slots=True)
class ProviderHosts:
    fathom: str
    gong: str


@dataclass
class PullState:
    """What outlives a restart of the worker (the supervisor builds a new ``PullWorker`` after a
    broker error): the slots, their fair share, the breakers and the runs still going. Runs of the
    failed worker keep their slots until they end, so the new one never runs more than
    ``concurrency`` at once, and a failing host stays known as failing (no fresh probes)."""

    settings: PullSettings
    breakers: BreakerRegistry | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.breakers = self.breakers or BreakerRegistry(
            failures_to_open=s.breaker_failures,
            open_seconds=s.breaker_open_seconds,
            open_max_seconds=s.breaker_open_max_seconds,
            probe_timeout_seconds=s.breaker_probe_timeout_seconds,
            enabled=s.breaker_enabled,
        )
        self.slots = asyncio.Semaphore(s.concurrency)
        self.running: set[asyncio.Task[None]] = set()
        self.fair: FairShare[_Parked] = FairShare(
            slots_per_host(s.concurrency, s.slots_per_host), s.lookahead or s.concurrency, self._suspect
        )
        self.integration_hosts: dict[str, str] = {}  # learned from each run: a slot's fairness key

    def _suspect(self, host: str) -> bool:
        assert self.breakers is not None
        breaker = self.breakers.get(host)
        return breaker is not None and breaker.suspect


@dataclass
class PullWorker:
    js: JetStreamContext
    store: IntegrationSource
    http: httpx.AsyncClient
    checkpoints: CheckpointStore
    settings: PullSettings
    hosts: ProviderHosts
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    limiters: LimiterRegistry | None = None
    max_deliver: int | None = None  # failed deliveries before a run gives up (None: ``max_failures``)
    breakers: BreakerRegistry | None = None
    state: PullState | None = None  # shared with the workers that replace this one (``PullState``)

    def __post_init__(self) -> None:
        self.limiters = self.limiters or LimiterRegistry(self.settings)
        self.max_failures = self.max_deliver or self.settings.max_failures
        self.state = self.state or PullState(self.settings, self.breakers)
        self.breakers = self.state.breakers
        self.publisher = Publisher(self.js, self.settings.redeliver_delay_seconds)
        self.running = self.state.running
        self.fair = self.state.fair
        self.integration_hosts = self.state.integration_hosts

    # --- the consumer loop --------------------------------------------------------------------------

    async def serve(self) -> None:
        spec = GATEWAY_PULL_CONSUMER
        try:
            info = await self.js.consumer_info(spec.stream, spec.durable)
            if info.config.max_deliver != spec.max_deliver:
                # A deployment from before runs counted their own failures (max_deliver 20): a
                # time-sliced backfill is delivered many times, so the limit is lifted in place.
                await ensure_consumer(self.js, spec)
        except NotFoundError:
            await ensure_consumer(self.js, spec)
        sub = await self.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        assert self.state is not None
        slots = self.state.slots
        running = self.running
        log.info("pull worker started", concurrency=self.settings.concurrency)
        try:
            while not self.stopping.is_set():
                await self._free_slot(slots)
                try:
                    chosen = await self._next_request(sub)
                except Exception:
                    # The broker away or the consumer deleted: the runtime's supervisor starts the
                    # worker again with backoff, declaring the consumer anew. This worker's runs
                    # checkpoint and release their requests first (bounded), so the new worker does
                    # not take them up while they still go on here.
                    slots.release()
                    await self._wind_down()
                    raise
                if chosen is None:
                    slots.release()
                    continue
                task = asyncio.create_task(self._guarded(chosen, slots))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:  # runs see ``stopping`` between pages, checkpoint and release their request
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            await self._unpark()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _free_slot(self, slots: asyncio.Semaphore) -> None:
        """A slot; meanwhile, requests parked longer than ``park_max_seconds`` (every slot busy
        with long runs) are given back for another replica to take, not held here."""
        if not self.fair.parked:
            await slots.acquire()
            return
        # One acquire, never cancelled while we look at the parked (a cancelled acquire that had
        # just been granted would lose the slot).
        acquiring = asyncio.ensure_future(slots.acquire())
        try:
            while True:
                done, _ = await asyncio.wait({acquiring}, timeout=self.settings.park_max_seconds / 2)
                if done:
                    return
                cutoff = time.monotonic() - self.settings.park_max_seconds
                for parked in self.fair.take_back(partial(_parked_since, cutoff)):
                    await self._release_unstarted(parked, self.settings.slice_yield_seconds, "no_slot")
        except BaseException:
            if acquiring.done() and not acquiring.cancelled():
                slots.release()
            else:
                acquiring.cancel()
            raise

    async def others_wait(self) -> bool:
        """Do requests wait for a slot: parked here, or not yet delivered to any replica?"""
        if self.fair.parked:
            return True
        spec = GATEWAY_PULL_CONSUMER
        info = await asyncio.wait_for(self.js.consumer_info(spec.stream, spec.durable), 2.0)
        return bool(info.num_pending)

    async def _wind_down(self) -> None:
        """Stop this worker's runs between pages and wait for them, ``restart_wait_seconds`` at
        most; one still going after that keeps its slot (``PullState``) until it ends."""
        self.stopping.set()
        mine = set(self.running)
        if mine:
            await asyncio.wait(mine, timeout=self.settings.restart_wait_seconds)

    async def _next_request(self, sub: Any) -> tuple[str, _Parked] | None:
        """The request a free slot takes, fairly between provider hosts (``_fair``): fetched
        requests of a host that holds its share of the slots are parked while others are looked for."""
        while True:
            spilled = self.fair.spill()
            if spilled is not None:
                await self._give_back(spilled)
                continue
            chosen = self.fair.pick(exhausted=False)
            if chosen is not None:
                return chosen
            try:  # while requests are parked, a short look: one of them goes when nothing else comes
                msgs = await sub.fetch(1, timeout=PARKED_LOOK_SECONDS if self.fair.parked else 1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                msgs = []
            for msg in msgs:
                self.fair.park(
                    self._host_key(msg), _Parked(msg, asyncio.create_task(self._keep_lease(msg))), self._key(msg)
                )
            if self.stopping.is_set():
                return None  # what is parked is given back by ``serve``
            if not msgs:  # nothing else waits: the oldest parked goes
                return self.fair.pick(exhausted=True)

    @staticmethod
    def _key(msg: Msg) -> str:
        """The fairness key: the request's integration."""
        try:
            return _request.decode(msg.data).integration_id
        except msgspec.DecodeError:
            return ""

    def _host_key(self, msg: Msg) -> str:
        try:
            request = _request.decode(msg.data)
        except msgspec.DecodeError:
            return ""  # ``handle`` drops it at once
        known = self.integration_hosts.get(request.integration_id)
        if known is not None:
            return known
        return host_of(self.hosts.fathom if request.provider == "fathom" else self.hosts.gong)

    async def _give_back(self, parked: _Parked) -> None:
        """A parked request of a failing host, released unstarted until the host may be tried.
        Its nak is a delivery, not a failure: the run counts its own (``_failures``)."""
        assert self.breakers is not None
        breaker = self.breakers.get(self._host_key(parked.msg))
        delay = max(self.settings.redeliver_delay_seconds, breaker.retry_in() if breaker else 0.0)
        await self._release_unstarted(parked, delay * random.uniform(1.0, 1.1), "failing_host")

    async def _release_unstarted(self, parked: _Parked, delay: float, reason: str) -> None:
        parked.lease.cancel()
        with contextlib.suppress(Exception):
            await parked.msg.nak(delay=delay or None)
            request = _request.decode(parked.msg.data)
            RELEASED.labels(request.provider, reason).inc()

    async def _unpark(self) -> None:
        """Give parked requests back at once (stopping, or the worker is restarted) rather than
        let them wait out their lease."""
        for parked in self.fair.drain():
            parked.lease.cancel()
            with contextlib.suppress(Exception):
                await parked.msg.nak()

    async def _guarded(self, chosen: tuple[str, _Parked], slots: asyncio.Semaphore) -> None:
        host, parked = chosen
        parked.lease.cancel()  # ``handle`` keeps it from now on
        try:
            await self.handle(parked.msg)
        except Exception:
            log.exception("pull run crashed; the request is redelivered after its lease ends")
        finally:
            self.fair.done(host, parked)
            slots.release()

    async def _keep_lease(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await msg.in_progress()
            except Exception as exc:
                log.warning("could not renew the run's lease", error=type(exc).__name__)

    async def handle(self, msg: Msg) -> None:
        if not tracing.on:
            await self._handle(msg)
            return
        # Each delivery of a run is a span in the trace its SyncRequested started: its provider
        # requests and every call and event it publishes are children of it.
        with tracing.span(
            "pull run",
            kind=SpanKind.CONSUMER,
            parent=tracing.extract(msg.headers),
            attributes={"messaging.system": "nats", "messaging.destination.name": msg.subject},
        ):
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            request = _request.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("unreadable sync request dropped", subject=msg.subject, error=str(exc)[:200])
            await msg.term()
            return
        if tracing.on:
            tracing.annotate(
                {
                    "callstream.run_id": request.run_id,
                    "callstream.integration_id": request.integration_id,
                    "callstream.workspace_id": request.workspace_id,
                    "callstream.provider": request.provider,
                    "callstream.sync.mode": request.mode,
                }
            )
        lease = asyncio.create_task(self._keep_lease(msg))
        try:
            try:
                try:
                    finished = await self.run(request, msg.metadata.sequence.stream)
                except IntegrationErased:  # nothing of it is kept or said any more
                    log.info("pull run stopped: its integration was erased", run_id=request.run_id)
                    with contextlib.suppress(Exception):  # a page saved after the erasure's purge
                        await self.checkpoints.forget(request.run_id)
                    await msg.term()
                    return
                except RunWithdrawn:  # cancelled: the request is gone already, nothing more to say
                    log.info("pull run withdrawn by the scheduler; stopped", run_id=request.run_id)
                    await msg.term()
                    return
                except RunDeferred:
                    raise
                except Exception as exc:  # a bug or a surprise: never lose the request, never spin on it
                    log.exception("pull run failed unexpectedly", run_id=request.run_id)
                    raise RunDeferred(
                        f"unexpected {type(exc).__name__}", self.settings.redeliver_delay_seconds
                    ) from None
            except RunDeferred as deferred:
                failures = await self._failures(request, deferred)
                if isinstance(deferred, ProviderUnavailable):
                    deferred.delay = self.provider_release(deferred.delay, max(1, failures))
                if failures < self.max_failures:
                    RELEASED.labels(request.provider, _reason(deferred)).inc()
                    log.info(
                        "pull run deferred",
                        run_id=request.run_id,
                        reason=deferred.detail,
                        delay=deferred.delay,
                        failures=failures,
                        delivered=msg.metadata.num_delivered,
                    )
                    if not isinstance(deferred, RunPaused):  # a paused run just reported its page
                        await self._announce_wait(request, deferred)
                    await msg.nak(delay=deferred.delay or None)
                    return
                finished = await self._gave_up(request, deferred, failures)
            try:
                await self.conclude(request, finished)
            except RunDeferred as deferred:
                await msg.nak(delay=deferred.delay)
                return
            await msg.ack()
        finally:
            lease.cancel()

    def provider_release(self, delay: float, failures: int) -> float:
        """How long a run whose provider failed is released for: what the provider or its breaker
        asked, and at least ``redeliver_delay_seconds`` doubled with each delivery up to
        ``defer_max_seconds``, so its failed deliveries last about an hour of outage (20:
        30 s, 1, 2, 4 min, then 5 min each), with a tenth of jitter so released runs spread out."""
        s = self.settings
        grown = min(s.defer_max_seconds, s.redeliver_delay_seconds * 2.0 ** min(failures - 1, 30))
        return max(delay, grown) * random.uniform(1.0, 1.1)  # jitter, not a secret

    async def _announce_wait(self, request: SyncRequested, deferred: RunDeferred) -> None:
        """Tell the scheduler the run is alive and when it goes on, so a long wait (a spent daily
        quota, a long Retry-After) is not taken for a dead worker. Best effort: the broker may be
        what the run waits for, and the scheduler's stale rule then retries the run as before."""
        try:
            cp = await self.checkpoints.load(request.run_id) or Checkpoint(integration_id=request.integration_id)
            now = utcnow()
            waiting = SyncProgress(
                run_id=request.run_id,
                integration_id=request.integration_id,
                page=cp.pages,
                calls_published=cp.calls_published,
                calls_already_received=cp.calls_already_received,
                checkpoint=cp.encode(),
                resume_after=now + timedelta(seconds=deferred.delay or 0),
                waiting_for=deferred.detail[:200],
                at=now,
            )
            await self.publisher.event(request.provider, waiting, request.traceparent)
        except Exception as exc:
            log.info("could not announce the run's wait", run_id=request.run_id, error=type(exc).__name__)

    async def _failures(self, request: SyncRequested, deferred: RunDeferred) -> int:
        """The run's failed deliveries, this one included, counted in its checkpoint: JetStream's
        own count cannot tell them apart from time slices and give-backs, so the consumer's
        ``max_deliver`` is unlimited and the run gives up here, at ``max_failures``, with its
        ``SyncFinished`` error. A pause, the account's pace or its spent daily quota is a wait, not
        a failure (0). The checkpoint store unreachable: not counted, as the broker is then what
        the run waits for, and it is released for ``redeliver_delay_seconds`` at least."""
        if isinstance(deferred, (RunPaused, PaceDeferred, QuotaSpent)):
            return 0
        try:
            cp = await self.checkpoints.load(request.run_id) or self._new_checkpoint(request)
            cp.failures += 1
            await self.checkpoints.save(request.run_id, cp)
        except Exception as exc:
            log.info("could not count the run's failure", run_id=request.run_id, error=type(exc).__name__)
            return 0
        return cp.failures

    async def _gave_up(self, request: SyncRequested, deferred: RunDeferred, failures: int) -> SyncFinished:
        checkpoint = await self._load(request.run_id) or Checkpoint(integration_id=request.integration_id)
        return self._finished(
            request, checkpoint, "error", f"gave up after {failures} deliveries, all failed: {deferred.detail}"
        )

    async def _listing(self, run_id: str) -> Listing | None:
        try:
            return await self.checkpoints.load_listing(run_id)
        except Exception as exc:
            raise RunDeferred(
                f"could not read the listing: {type(exc).__name__}", self.settings.redeliver_delay_seconds
            ) from None

    async def _load(self, run_id: str) -> Checkpoint | None:
        try:
            return await self.checkpoints.load(run_id)
        except Exception as exc:
            raise RunDeferred(
                f"could not read the checkpoint: {type(exc).__name__}", self.settings.redeliver_delay_seconds
            ) from None

    @staticmethod
    def _finished(request: SyncRequested, cp: Checkpoint, status: str, error: str | None) -> SyncFinished:
        watermark = cp.window_end if status == "success" and request.mode != "latest" else None
        return SyncFinished(
            run_id=request.run_id,
            integration_id=request.integration_id,
            status=status,  # type: ignore[arg-type]
            pages=cp.pages,
            calls_published=cp.calls_published,
            calls_already_received=cp.calls_already_received,
            checkpoint=cp.encode(),
            watermark=watermark,
            error=error,
            at=utcnow(),
        )

    async def conclude(self, request: SyncRequested, finished: SyncFinished) -> None:
        """Mark the run finished in its checkpoint, then announce it (a redelivery re-announces)."""
        cp = await self._load(request.run_id) or Checkpoint(integration_id=request.integration_id)
        if not cp.finished:
            cp.pages, cp.calls_published, cp.calls_already_received = (
                max(cp.pages, finished.pages),
                max(cp.calls_published, finished.calls_published),
                max(cp.calls_already_received, finished.calls_already_received),
            )
            cp.finished, cp.status, cp.error = True, finished.status, finished.error
            try:
                await self.checkpoints.save(request.run_id, cp)
            except Exception as exc:
                raise RunDeferred(
                    f"could not save the checkpoint: {type(exc).__name__}", self.settings.redeliver_delay_seconds
                ) from None
        await self.publisher.event(request.provider, finished, request.traceparent)
        log.info(
            "pull run finished",
            run_id=request.run_id,
            provider=request.provider,
            status=finished.status,
            pages=finished.pages,
            calls_published=finished.calls_published,
            error=finished.error,
        )

    # --- one run ------------------------------------------------------------------------------------

    async def run(self, request: SyncRequested, request_seq: int | None = None) -> SyncFinished:
        cp = await self._load(request.run_id)
        if cp is not None and cp.finished:
            return self._finished(request, cp, cp.status or "success", cp.error)
        if cp is None:
            cp = self._new_checkpoint(request)
        cp.integration_id = request.integration_id  # one written before they named it, too
        listing: Listing | None = None
        if request.reconcile and request.mode != "latest" and request.limit is None:
            listing = await self._listing(request.run_id)
            if listing is None:  # pages read before without a listing kept (an older gateway): unknown
                listing = Listing(started_at=utcnow(), complete=cp.pages == 0)
            listing.integration_id = request.integration_id
        run = Run(
            request=request,
            checkpoint=cp,
            checkpoints=self.checkpoints,
            publisher=self.publisher,
            settings=self.settings,
            stopping=self.stopping,
            others_wait=self.others_wait,
            # The run's calls carry its trace: the run's span when traced, else the request's.
            traceparent=tracing.current_traceparent() if tracing.on else (request.traceparent or new_traceparent()),
            listing=listing,
            withdrawn=None if request_seq is None else partial(request_withdrawn, self.js, request_seq),
            integration_status=self._status_of(request.integration_id),
        )
        log.info(
            "pull run started",
            run_id=request.run_id,
            provider=request.provider,
            mode=request.mode,
            resumed_at_page=cp.pages,
        )
        try:
            access = await self._access(request)
            if request.mode == "latest" and request.limit is None:
                run.request = msgspec.structs.replace(request, limit=DEFAULT_LATEST)
            if run.request.limit is not None and run.request.limit < 1:
                raise RunFailed("limit must be at least 1")
            if request.provider == "fathom":
                await run_fathom(run, self._fathom(access))
            elif request.mode == "latest":
                await run_gong_latest(
                    run,
                    self._gong(access),
                    utcnow(),
                    self.settings.gong_history_start,
                    run.request.limit or DEFAULT_LATEST,
                )
            else:
                await run_gong(run, self._gong(access))
        except RunFailed as failed:
            return self._finished(request, cp, failed.status, failed.detail)
        return self._finished(request, cp, "success", None)

    def _status_of(self, integration_id: str) -> Callable[[], Awaitable[str | None]] | None:
        """How a run re-reads its integration's status (a store without ``status``: never)."""
        status = getattr(self.store, "status", None)
        return None if status is None else partial(status, integration_id)

    def _new_checkpoint(self, request: SyncRequested) -> Checkpoint:
        """A run's first checkpoint: its window, fixed now."""
        start, end = run_window(request, utcnow())
        if request.provider == "gong" and request.mode != "latest" and start is None:
            start = self.settings.gong_history_start
        return Checkpoint(window_start=start, window_end=end, integration_id=request.integration_id)

    async def _access(self, request: SyncRequested) -> IntegrationAccess:
        try:
            access = await self.store.access(request.integration_id)
        except ReauthRequired as exc:
            raise ReauthNeeded(exc.detail) from None
        except HostNotAllowed as exc:
            raise RunFailed(f"the integration's API host is not allowed: {exc}") from None
        except RefreshFailed as exc:
            raise RunDeferred(f"OAuth refresh failed: {exc}", self.settings.redeliver_delay_seconds) from None
        except Exception as exc:
            raise RunDeferred(
                f"integration store unavailable: {type(exc).__name__}", self.settings.redeliver_delay_seconds
            ) from None
        if access is None:
            raise RunFailed(f"unknown integration {request.integration_id}")
        if access.provider != request.provider or access.workspace_id != request.workspace_id:
            raise RunFailed("the request's provider or workspace does not match the integration")
        if access.status == "erased":  # a request queued before the erasure: nothing to run or say
            raise IntegrationErased(request.run_id)
        if access.status == "reauth_required":
            raise ReauthNeeded("the integration must be connected again")
        if access.status != "active":
            raise RunFailed(f"the integration is {access.status}")
        return access

    def _reauthorize(self, access: IntegrationAccess, headers: dict[str, str]) -> Any:
        token = access.access_token

        async def reauthorize() -> Headers:
            nonlocal token
            try:
                fresh = await self.store.refreshed(access.id, token)
            except ReauthRequired as exc:
                raise ReauthNeeded(exc.detail) from None
            except RefreshFailed as exc:
                raise RunDeferred(f"OAuth refresh failed: {exc}", self.settings.redeliver_delay_seconds) from None
            token = fresh.access_token
            return {**headers, "Authorization": f"Bearer {token}"}

        return reauthorize

    def _fathom(self, access: IntegrationAccess) -> FathomClient:
        root = fathom_api_root(access.base_url, self.hosts.fathom)
        assert self.limiters is not None
        assert self.breakers is not None
        breaker = self.breakers.for_url(root)
        self.integration_hosts[access.id] = host_of(root)
        if access.auth_kind == "oauth":
            headers = {"Authorization": f"Bearer {access.access_token}"}
            account = account_key("fathom", root, access.id)
            http = ProviderHttp(
                self.http,
                self.limiters.fathom(account),
                self.settings,
                headers,
                "fathom",
                self._reauthorize(access, {}),
                breaker=breaker,
                account=account,
            )
            return FathomClient(http, root, embed_content=False)
        if not access.api_key:
            raise RunFailed("the Fathom integration has no API key")
        account = account_key("fathom", root, access.api_key)
        limits = self.limiters.fathom(account)
        return FathomClient(
            ProviderHttp(
                self.http,
                limits,
                self.settings,
                {"X-Api-Key": access.api_key},
                "fathom",
                breaker=breaker,
                account=account,
            ),
            root,
            embed_content=True,
        )

    def _gong(self, access: IntegrationAccess) -> GongClient:
        root = gong_api_root(access.base_url, self.hosts.gong)
        assert self.limiters is not None
        assert self.breakers is not None
        breaker = self.breakers.for_url(root)
        self.integration_hosts[access.id] = host_of(root)
        json = {"Content-Type": "application/json"}
        account = account_key("gong", root, access.access_key)
        limits = self.limiters.gong(account)
        if access.auth_kind == "oauth":
            headers = {**json, "Authorization": f"Bearer {access.access_token}"}
            return GongClient(
                ProviderHttp(
                    self.http,
                    limits,
                    self.settings,
                    headers,
                    "gong",
                    self._reauthorize(access, json),
                    breaker=breaker,
                    account=account,
                ),
                root,
            )
        if not access.access_key or not access.access_key_secret:
            raise RunFailed("the Gong integration has no access key and secret")
        basic = base64.b64encode(f"{access.access_key}:{access.access_key_secret}".encode()).decode()
        return GongClient(
            ProviderHttp(
                self.http,
                limits,
                self.settings,
                {**json, "Authorization": f"Basic {basic}"},
                "gong",
                breaker=breaker,
                account=account,
            ),
            root,
        )
