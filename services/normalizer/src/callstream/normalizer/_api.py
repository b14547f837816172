"""The normalizer's admin API (``CALLSTREAM_NORMALIZER_ADMIN_TOKEN``; closed, 401, while unset):
workspace retention, which the normalizer's own job carries out (``_retention.py``), and its dead
letters (list, show, redrive one or all: what ``callstream-normalizer dlq`` does, for the console)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, get, post, put
from litestar.params import FromPath, FromQuery
from nats.js import JetStreamContext

from callstream.contracts import WorkspaceId
from callstream.runtime import AdminToken, ApiError

from . import _dlq
from ._retention import Retention, get_retention, set_retention

__all__ = ["admin_router"]

MAX_BODY_BYTES = 1024
MAX_RETENTION_DAYS = 36_500  # the migration's check
MAX_DLQ_ITEMS = 200
# A dead letter's bytes as text in a list (a raw call can be 15 MiB); one entry shows up to 1 MiB.
LIST_PAYLOAD_BYTES = 16 * 1024
SHOW_PAYLOAD_BYTES = 1024 * 1024
# "Redrive all" takes at most this many entries a request, oldest first, and says how many are left.
# Each is a publish awaiting its ack then a delete: 100 take well under a second on a healthy broker,
# so the answer comes before any proxy's or client's timeout (the DLQ may hold thousands after an
# outage), and a cause not fixed yet sends back a batch, not the whole DLQ, onto the consumers at once.
# The caller repeats until ``remaining`` is 0; a repeat is harmless (see ``_dlq.redrive``).
REDRIVE_BATCH = 100
MAX_FAILURES_SHOWN = 20


class RetentionRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Required, so that a typo in the field name is a 400 rather than "keep for ever".
    message_retention_days: Annotated[int, msgspec.Meta(ge=1, le=MAX_RETENTION_DAYS)] | None


class RetentionView(msgspec.Struct):
    workspace_id: str
    message_retention_days: int | None
    updated_at: datetime | None


class DeadLetterView(msgspec.Struct, omit_defaults=True):
    dlq_seq: int
    consumer: str
    subject: str
    stream_sequence: int
    failed_at: datetime
    delivery_count: int
    error: str
    bytes: int
    payload: str | None = None
    payload_truncated: bool | None = None  # with the payload only


class DeadLetters(msgspec.Struct):
    items: list[DeadLetterView]
    total: int


class Redriven(msgspec.Struct):
    redriven: int
    subject: str


class RedriveFailure(msgspec.Struct):
    dlq_seq: int
    error: str  # no_bytes (recorded without them: it stays) or broker_unavailable


class RedrivenAll(msgspec.Struct):
    redriven: int  # published again and dropped from the DLQ
    failed: int  # matching entries that could not be (recorded without their bytes, or the broker failed)
    remaining: int  # matching entries with their bytes not tried by this request: ask again
    up_to: int | None  # the newest DLQ sequence considered: pass it again to leave later arrivals alone
    failures: list[RedriveFailure]  # the last few


def _filtered(found: list[tuple[int, Any]], consumer: str | None, subject: str | None) -> list[tuple[int, Any]]:
    if subject is not None and not _dlq.valid_subject_filter(subject):
        raise ApiError(400, "bad_subject", "subject is a NATS subject filter: tokens, '*' for one, a final '>'")
    return [
        (seq, letter)
        for seq, letter in found
        if (consumer is None or letter.consumer == consumer)
        and (subject is None or _dlq.subject_matches(subject, letter.subject))
    ]


def _dead_letter(seq: int, letter: Any, payload_bytes: int | None) -> DeadLetterView:
    view = DeadLetterView(
        dlq_seq=seq,
        consumer=letter.consumer,
        subject=letter.subject,
        stream_sequence=letter.stream_sequence,
        failed_at=letter.failed_at,
        delivery_count=letter.delivery_count,
        error=letter.error,
        bytes=len(letter.data),
    )
    if payload_bytes is not None:
        view.payload = letter.data[:payload_bytes].decode("utf-8", "replace")
        view.payload_truncated = len(letter.data) > payload_bytes
    return view


_REQUEST = msgspec.json.Decoder(RetentionRequest)
_WORKSPACE = msgspec.json.Decoder(WorkspaceId)


def _workspace(value: str) -> str:
    try:
        return _WORKSPACE.decode(msgspec.json.encode(value))
    except msgspec.ValidationError:
        raise ApiError(400, "bad_workspace_id", "a workspace id is 1-64 letters, digits, '_' or '-'") from None


def _view(retention: Retention) -> RetentionView:
    return RetentionView(retention.workspace_id, retention.message_retention_days, retention.updated_at)


def admin_router(
    pool_of: Callable[[], asyncpg.Pool], admin: AdminToken, js_of: Callable[[], JetStreamContext]
) -> Router:
    @get("/workspaces/{workspace_id:str}/retention")
    async def read_retention(workspace_id: FromPath[str]) -> RetentionView:
        return _view(await get_retention(pool_of(), _workspace(workspace_id)))

    @put("/workspaces/{workspace_id:str}/retention")
    async def write_retention(workspace_id: FromPath[str], request: Request[Any, Any, Any]) -> RetentionView:
        """``{"message_retention_days": N}`` (1-36500) or ``null`` (keep for ever). Messages older
        than that become tombstones on the retention job's next run."""
        workspace = _workspace(workspace_id)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY_BYTES} bytes")
        try:
            wanted = _REQUEST.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return _view(await set_retention(pool_of(), workspace, wanted.message_retention_days))

    async def _letters() -> list[tuple[int, Any]]:
        try:
            return await _dlq.entries(js_of())
        except Exception as exc:  # the broker away or slow: say so, not 500
            raise ApiError(503, "broker_unavailable", f"the DLQ cannot be read now ({type(exc).__name__})") from None

    @get("/dlq")
    async def list_dead_letters(
        include: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        consumer: FromQuery[str | None] = None,
        subject: FromQuery[str | None] = None,
    ) -> DeadLetters:
        """The normalizer's dead letters, newest first (``limit`` up to 200); ``include=payload``
        adds each one's first 16 KiB as text. ``consumer`` (e.g. ``normalizer``) and ``subject`` (a
        NATS subject filter, e.g. ``calls.raw.fathom.>``) keep those that match; ``total`` counts them."""
        if not 1 <= limit <= MAX_DLQ_ITEMS:
            raise ApiError(400, "bad_limit", f"limit is 1 to {MAX_DLQ_ITEMS}")
        found = _filtered(await _letters(), consumer, subject)
        shown = list(reversed(found))[:limit]
        payload = LIST_PAYLOAD_BYTES if include == "payload" else None
        return DeadLetters(items=[_dead_letter(seq, letter, payload) for seq, letter in shown], total=len(found))

    async def _letter(seq: int) -> Any:
        try:
            return await _dlq.entry(js_of(), seq)
        except Exception as exc:  # the broker away or slow: say so, not 500
            raise ApiError(503, "broker_unavailable", f"the DLQ cannot be read now ({type(exc).__name__})") from None

    @get("/dlq/{seq:int}")
    async def show_dead_letter(seq: FromPath[int]) -> DeadLetterView:
        letter = await _letter(seq)
        if letter is None:
            raise ApiError(404, "unknown_dead_letter", "no dead letter of the normalizer has this sequence")
        return _dead_letter(seq, letter, SHOW_PAYLOAD_BYTES)

    @post("/dlq/{seq:int}/redrive", status_code=200)
    async def redrive_dead_letter(seq: FromPath[int]) -> Redriven:
        """Publish the original bytes to the original subject again, then drop the entry."""
        letter = await _letter(seq)
        if letter is None:
            raise ApiError(404, "unknown_dead_letter", "no dead letter of the normalizer has this sequence")
        if not letter.data:
            raise ApiError(409, "no_bytes", "this dead letter was recorded without its bytes: nothing to redrive")
        try:
            await _dlq.redrive(js_of(), seq, letter)
        except Exception as exc:
            raise ApiError(503, "broker_unavailable", f"not redriven ({type(exc).__name__}); try again") from None
        return Redriven(redriven=seq, subject=letter.subject)

    @post("/dlq/redrive", status_code=200)
    async def redrive_dead_letters(
        consumer: FromQuery[str | None] = None,
        subject: FromQuery[str | None] = None,
        limit: FromQuery[int] = REDRIVE_BATCH,
        up_to: FromQuery[int | None] = None,
    ) -> RedrivenAll:
        """Redrive every dead letter (or those ``consumer`` and ``subject`` match, as in the list),
        oldest first, at most ``limit`` (up to 100) a request: ``remaining`` says how many are left.
        ``up_to`` (a DLQ sequence, e.g. the newest one a person saw, or the answer's own) leaves
        newer entries alone: an entry whose cause is not fixed comes back as a newer one, and a
        caller repeating until ``remaining`` is 0 would otherwise never end.
        Entries recorded without their bytes stay (``failed``). The first broker failure ends the
        request (the next would wait as long), the entries not tried counted in ``remaining``."""
        if not 1 <= limit <= REDRIVE_BATCH:
            raise ApiError(400, "bad_limit", f"limit is 1 to {REDRIVE_BATCH}")
        matching = [
            (seq, letter)
            for seq, letter in _filtered(await _letters(), consumer, subject)
            if up_to is None or seq <= up_to
        ]
        hollow = [seq for seq, letter in matching if not letter.data]
        todo = [(seq, letter) for seq, letter in matching if letter.data]
        failures = [RedriveFailure(seq, "no_bytes") for seq in hollow]
        redriven = tried = 0
        for seq, letter in todo[:limit]:
            tried += 1
            try:
                await _dlq.redrive(js_of(), seq, letter)
            except Exception:
                failures.append(RedriveFailure(seq, "broker_unavailable"))
                break
            redriven += 1
        return RedrivenAll(
            redriven=redriven,
            failed=len(failures),
            remaining=len(todo) - tried,
            up_to=up_to if up_to is not None else max((seq for seq, _ in matching), default=None),
            failures=failures[-MAX_FAILURES_SHOWN:],
        )

    return Router(
        path="/v1",
        guards=[admin],
        route_handlers=[
            read_retention,
            write_retention,
            list_dead_letters,
            show_dead_letter,
            redrive_dead_letter,
            redrive_dead_letters,
        ],
    )
