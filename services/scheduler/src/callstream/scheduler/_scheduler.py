"""The due loop: one ``tick`` finds what is due, creates runs, publishes them and keeps house.

Runs are rows first and messages second: a run is committed as ``queued`` with ``published_at``
null, then published with ``Nats-Msg-Id`` = run id. A publish that fails (broker away) is simply
retried by the next tick; JetStream's duplicate window turns a second publish into a no-op.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import SYNC, SyncEvent, SyncProgress, SyncRequested, SyncStored, sync_requested_subject
from callstream.runtime import SpanKind, get_logger, new_traceparent, tracing
from callstream.runtime._tracing import NO_SPAN

from ._cancel import cancel_run
from ._clock import Clock
from ._store import StaleRun, SyncStore, sync_request

log = get_logger(__name__)

PUBLISH_TIMEOUT_SECONDS = 5.0

JetStreamSource = Callable[[], JetStreamContext | None]


@dataclass(slots=True)
class TickReport:
    new_integrations: int = 0
    stale_runs: int = 0
    created_runs: list[str] = field(default_factory=list)
    published_runs: int = 0
    retention: dict[str, Any] | None = None


def _ids(request: SyncRequested, subject: str, run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "callstream.run_id": request.run_id,
        "callstream.integration_id": request.integration_id,
        "callstream.workspace_id": request.workspace_id,
        "callstream.sync.mode": request.mode,
        "callstream.sync.trigger": run.get("trigger"),
    }


class Scheduler:
    def __init__(self, store: SyncStore, clock: Clock, jetstream: JetStreamSource) -> None:
        self.store = store
        self.clock = clock
        self._jetstream = jetstream
        self._event_decoder = msgspec.json.Decoder(SyncEvent)
        # Cancelled runs whose request could not be withdrawn yet (broker away): retried every tick.
        self._to_withdraw: dict[uuid.UUID, StaleRun] = {}

    async def tick(self) -> TickReport:
        now = self.clock.now()
        report = TickReport()
        report.new_integrations = await self.store.ensure_states(now)
        stale = await self.store.expire_stale(now)
        report.stale_runs = len(stale)
        for run in stale:
            log.warning("run failed: no progress", run_id=str(run.run_id))
            await self._withdraw(run)
        created = await self.store.claim_due(now)
        report.created_runs = [str(r["id"]) for r in created]
        for run in created:
            log.info(
                "run created", run_id=str(run["id"]), integration_id=str(run["integration_id"]), trigger=run["trigger"]
            )
        report.published_runs = await self.publish_pending()
        for run in list(self._to_withdraw.values()):
            if await self._withdraw(run):
                del self._to_withdraw[run.run_id]
        report.retention = await self.store.run_retention(now)
        if report.retention is not None:
            log.info("retention job done", **report.retention)
        return report

    async def publish_pending(self) -> int:
        """Publish every committed, unpublished run; stop at the first failure (the next tick retries)."""
        js = self._jetstream()
        if js is None:
            return 0
        published = 0
        for run in await self.store.unpublished_runs():
            if not await self.publish_run(run, js):
                break
            published += 1
        return published

    async def publish_run(self, run: Mapping[str, Any], js: JetStreamContext | None = None) -> bool:
        js = js or self._jetstream()
        if js is None:
            return False
        request = sync_request(run)
        subject = sync_requested_subject(request.provider)
        # A run starts a trace: the pull run, its provider requests and every call it publishes
        # continue it. Untraced, the request still carries a new trace context for the logs.
        with (
            tracing.span(f"{subject} publish", kind=SpanKind.PRODUCER, attributes=_ids(request, subject, run))
            if tracing.on
            else NO_SPAN
        ):
            traceparent = tracing.current_traceparent() if tracing.on else new_traceparent()
            request = msgspec.structs.replace(request, traceparent=traceparent)
            headers = {"Nats-Msg-Id": request.run_id, "traceparent": traceparent or ""}
            if tracing.on:
                tracing.inject(headers)
            try:
                ack = await js.publish(
                    subject, msgspec.json.encode(request), headers=headers, timeout=PUBLISH_TIMEOUT_SECONDS
                )
            except Exception as exc:
                log.warning("sync request not published yet", run_id=request.run_id, error=type(exc).__name__)
                return False
        if await self.store.mark_published(run["id"], self.clock.now(), ack.seq) == "cancelled":
            await self._withdraw_cancelled(StaleRun(run["id"], ack.seq))  # cancelled while being published
        return True

    async def cancel(self, integration_id: uuid.UUID, run_id: uuid.UUID) -> Any:
        """Cancel a queued or running run (see ``_cancel``); raises RunNotFound or RunNotActive."""
        run = await cancel_run(self.store.pool, integration_id, run_id, self.clock.now())
        log.info("run cancelled", run_id=str(run_id), integration_id=str(integration_id))
        await self._withdraw_cancelled(StaleRun(run["id"], run["request_seq"]))
        return run

    async def _withdraw_cancelled(self, run: StaleRun) -> None:
        if not await self._withdraw(run):
            self._to_withdraw[run.run_id] = run  # the next ticks try again

    async def _withdraw(self, run: StaleRun) -> bool:
        """Best effort: take a failed or cancelled run's request out of the work queue so no worker
        starts it later (a worker holding it stops at its next page); False when the broker could not."""
        if run.request_seq is None:
            return True  # never published: nothing to withdraw
        js = self._jetstream()
        if js is None:
            return False
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await js.delete_msg(SYNC, run.request_seq)
        except NotFoundError:
            pass  # already taken and acknowledged by a worker
        except Exception as exc:
            log.warning("run request not withdrawn", run_id=str(run.run_id), error=type(exc).__name__)
            return False
        return True

    async def apply_event(self, data: bytes) -> bool:
        """Apply one ``SyncProgress``/``SyncFinished``/``SyncStored``; False when it changed nothing
        (a redelivery, a late event of a settled run, an unknown run). Raises msgspec errors for bad
        payloads."""
        event = self._event_decoder.decode(data)
        if isinstance(event, SyncProgress):
            return await self.store.apply_progress(event)
        if isinstance(event, SyncStored):
            return await self.store.apply_stored(event)
        return await self.store.apply_finished(event, self.clock.now())
