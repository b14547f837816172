"""JetStream pull requests with a byte limit, which nats-py's ``fetch`` cannot ask for.

A pull request is a JSON body published to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` with
a reply inbox; JetStream's takes ``max_bytes`` next to ``batch``, and stops delivering before a
message that would take the request over it. nats-py 2.16's ``PullSubscription.fetch(batch,
timeout, heartbeat)`` builds that body without ``max_bytes`` (``nats/js/client.py``, ``_fetch_n``),
so :class:`BytePull` publishes the same request itself, through nats-py's public API (an inbox of
its own, ``publish`` with ``reply``). What the server does with it (nats-server 2.15, measured,
and kept by ``tests/integration/test_normalizer_pull.py``):

- ``no_wait`` with ``expires``: wait up to ``expires`` for the first message, then deliver what is
  there (up to ``batch`` and ``max_bytes``) and end at once: what nats-py's fetch does in two
  requests, in one;
- every request ends with a status message: ``404 No Messages``, ``408 Request Timeout``,
  ``409 Batch Completed``, or ``409 Message Size Exceeds MaxBytes`` when the next message does not
  fit in what is left (it stays for a later request; when it is the first, nothing is delivered).

Any other status (``503`` no responders: the consumer is gone; ``409 Consumer Deleted``; a request
the consumer's limits refuse) raises :class:`PullFailed`, so the supervisor rebuilds the consumer,
as it did when nats-py's fetch raised.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from callstream.contracts import ConsumerSpec

__all__ = ["BytePull", "PullFailed", "Pulled"]

# The JetStream API prefix of a context without a domain (callstream uses none).
JS_API = "$JS.API"
# How much longer than the request's ``expires`` the client waits for the server's closing status:
# long enough that a request normally ends with its own status before the next one is sent.
_GRACE_SECONDS = 0.5
_END_OF_REQUEST = {"404", "408"}
# 409s that every later request would get too: the consumer is gone, or its configuration
# (max_request_batch, max_request_max_bytes) refuses what is asked. The supervisor restarts the
# worker with backoff and readiness names it, rather than a loop that fetches nothing.
_REFUSED = ("Consumer Deleted", "Exceeded MaxRequest")
_PASSING_PAUSE_SECONDS = 0.1
_TOO_LARGE = "Message Size Exceeds MaxBytes"
_ENCODE = msgspec.json.Encoder()


class PullFailed(Exception):
    """JetStream refused the pull request (no such consumer, a bad request)."""


@dataclass(frozen=True, slots=True)
class Pulled:
    msgs: list[Msg] = field(default_factory=list)
    nbytes: int = 0  # the messages' payload bytes
    # Ended by its batch size or byte limit rather than by running out: more is waiting (behind).
    full: bool = False
    # Nothing delivered because the next message alone is larger than the bytes asked for.
    oversized: bool = False


class BytePull:
    """Pull requests on one durable consumer, with ``max_bytes``. :meth:`open` before use, and
    :meth:`close` after; one request at a time."""

    def __init__(self, nc: Client, spec: ConsumerSpec, *, api_prefix: str = JS_API) -> None:
        self._nc = nc
        self._subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"
        self._sub: Subscription | None = None
        self._inbox = ""
        self._requests = 0

    async def open(self) -> BytePull:
        # Each request gets its own reply subject under one subscription: a message is ours
        # whichever request it answers, but a status ends only the request it names. With one
        # reply subject, the closing status of a request already done (a full batch returns before
        # its "409 Batch Completed" is read) would end the next one early, and so on down the line.
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._inbox}.*")
        return self

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def pull(self, batch: int, max_bytes: int, timeout: float) -> Pulled:
        """Up to ``batch`` messages whose payloads fit in ``max_bytes`` (0: no byte limit), waiting
        up to ``timeout`` seconds for the first. Nothing when none came in time."""
        sub = self._sub
        if sub is None:
            raise PullFailed("the pull is not open")
        msgs: list[Msg] = []
        nbytes = 0
        # What a request given up on delivered late (after a client timeout or a reconnect) is ours
        # all the same: count it in this batch. Its closing status only says that it ended.
        while sub.pending_msgs:
            msg = await sub.next_msg(timeout=None)
            if _status(msg) is None:
                msgs.append(msg)
                nbytes += len(msg.data)
        left, room = batch - len(msgs), max_bytes - nbytes if max_bytes else 0
        if left <= 0 or (max_bytes and room <= 0):
            return Pulled(msgs, nbytes, full=True)
        request: dict[str, object] = {"batch": left, "expires": int(timeout * 1e9), "no_wait": True}
        if max_bytes:
            request["max_bytes"] = room
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        await self._nc.publish(self._subject, _ENCODE.encode(request), reply=reply)
        deadline = time.monotonic() + timeout + _GRACE_SECONDS
        while len(msgs) < batch:
            try:
                msg = await sub.next_msg(timeout=max(deadline - time.monotonic(), 0.001))
            except nats.errors.TimeoutError:
                return Pulled(msgs, nbytes)  # no answer in time (a reconnect): what came, if anything
            status = _status(msg)
            if status is None:
                msgs.append(msg)
                nbytes += len(msg.data)
                continue
            if msg.subject != reply:  # the end of an earlier request
                continue
            code, description = status
            if code == "100":  # an idle heartbeat
                continue
            if code in _END_OF_REQUEST:
                return Pulled(msgs, nbytes)
            if code == "409" and not description.startswith(_REFUSED):
                # Batch Completed, Message Size Exceeds MaxBytes, or a passing one (Leadership
                # Change, Exceeded MaxWaiting): the request is over, and more may be waiting.
                oversized = description == _TOO_LARGE and not msgs
                if not msgs and not oversized:
                    await asyncio.sleep(_PASSING_PAUSE_SECONDS)  # never a loop of instant refusals
                return Pulled(msgs, nbytes, full=bool(msgs), oversized=oversized)
            raise PullFailed(f"pull request refused: {code} {description}")
        return Pulled(msgs, nbytes, full=True)


def _status(msg: Msg) -> tuple[str, str] | None:
    """The status of a JetStream status message (no payload, no reply), else None."""
    headers = msg.headers
    if msg.reply or not headers or msg.data:
        return None
    code = headers.get("Status")
    if code is None:
        return None
    return code, headers.get("Description", "")
