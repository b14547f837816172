"""Publishing a run's calls and its progress to JetStream, each acknowledged before we go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext

from callstream.contracts import (
    CALLS_RAW,
    SYNC_EVENTS,
    RawCall,
    Source,
    SyncFinished,
    SyncProgress,
    raw_calls_subject,
    sync_events_subject,
)

from ._errors import RunDeferred

PUBLISH_TIMEOUT = 10.0


@dataclass
class Publisher:
    js: JetStreamContext
    redeliver_delay: float

    async def _publish(self, subject: str, data: bytes, msg_id: str, stream: str, traceparent: str | None) -> None:
        headers = {"Nats-Msg-Id": msg_id}
        if traceparent:
            headers["traceparent"] = traceparent
        await self.js.publish(subject, data, timeout=PUBLISH_TIMEOUT, stream=stream, headers=headers)

    async def calls(self, source: Source, calls: Sequence[RawCall]) -> None:
        """Every call of a page, in parallel; returns only when JetStream has stored them all."""
        subject = raw_calls_subject(source)
        try:
            await asyncio.gather(
                *(self._publish(subject, msgspec.json.encode(c), c.event_id, CALLS_RAW, c.traceparent) for c in calls)
            )
        except Exception as exc:  # any broker failure: the page is not done, come back later
            raise RunDeferred(f"could not publish to {CALLS_RAW}: {type(exc).__name__}", self.redeliver_delay) from None

    async def event(self, provider: Source, event: SyncProgress | SyncFinished, traceparent: str | None) -> None:
        if isinstance(event, SyncFinished):
            kind = "finished"
        elif event.resume_after is not None:  # one per release of the run, never deduplicated with a page
            kind = f"waiting-{event.page}-{event.at.timestamp():.6f}"
        else:
            kind = f"progress-{event.page}"
        try:
            await self._publish(
                sync_events_subject(provider),
                msgspec.json.encode(event),
                f"sync-{event.run_id}-{kind}",
                SYNC_EVENTS,
                traceparent,
            )
        except Exception as exc:
            raise RunDeferred(
                f"could not publish to {SYNC_EVENTS}: {type(exc).__name__}", self.redeliver_delay
            ) from None


def utcnow() -> datetime:
    return datetime.now(UTC)
