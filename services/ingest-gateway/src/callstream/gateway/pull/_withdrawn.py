"""Whether the scheduler withdrew a run's request: the cancel signal a pull run checks at each page.

The scheduler cancels a run (or fails a stale one) by deleting its ``SyncRequested`` from the SYNC
work queue. A work-queue message stays in its stream until the worker acknowledges it, so while a
worker holds a run, its request missing from the stream can only mean it was withdrawn. One
``STREAM.MSG.GET`` by sequence a page: no new subject, bucket or table, and any replica, resumed
or not, sees it. When the broker cannot say, the run goes on (the next page asks again).
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import SYNC
from callstream.runtime import get_logger

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


async def request_withdrawn(js: JetStreamContext, request_seq: int) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await js.get_msg(SYNC, request_seq)
    except NotFoundError:
        return True
    except Exception as exc:
        log.info("could not tell whether the run's request was withdrawn", error=type(exc).__name__)
    return False
