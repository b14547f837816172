"""Admin HTTP: trigger runs, read run history and sync state. Every route needs the scheduler's
admin token (``CALLSTREAM_SCHEDULER_ADMIN_TOKEN``)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import ResponseHeader
from litestar.params import FromPath, QueryParameter

from callstream.contracts import Source, SyncMode, TimeWindow
from callstream.runtime import AdminToken, ApiError, BadCursor, ManageGuard, decode_keyset_cursor, encode_keyset_cursor

from ._cancel import RunNotActive, RunNotFound
from ._policy import PlanError, RunPlan
from ._presets import resolve
from ._scheduler import Scheduler
from ._store import ERASED, IntegrationErased, IntegrationNotActive, IntegrationNotFound, RunActive

MAX_PAGE = 200
MAX_STATES = 500  # integration ids one sync-state read may name
MAX_PAGED_IDS = 50  # ... and when it pages (its Link repeats them)
MAX_STATE_PAGE = 500  # the largest page of GET /v1/sync-state?limit=
MAX_CURSOR = 512

# A state view's status (``state_view``) and the gateway's status of an integration listed (an erased
# one never is).
SyncStatus = Literal["pending", "syncing", "success", "error", "reauth_required"]
IntegrationStatus = Literal["active", "disabled", "reauth_required"]
Provider = Literal["fathom", "gong"]
MAX_BODY_BYTES = 16 * 1024

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class SyncRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    mode: SyncMode | None = None  # may be left out with ``days`` (see ``_presets``)
    days: int | None = None
    from_: AwareDatetime | None = msgspec.field(default=None, name="from")
    to: AwareDatetime | None = None
    limit: int | None = None


class RunAccepted(msgspec.Struct):
    run_id: str


class SyncRunView(msgspec.Struct):
    run_id: str
    integration_id: str
    mode: str
    trigger: str
    status: str
    window: TimeWindow
    limit: int | None
    created_at: datetime
    published_at: datetime | None
    started_at: datetime | None
    last_progress_at: datetime | None
    resume_after: datetime | None  # set while the run waits on purpose (Retry-After, a spent quota)
    waiting_for: str | None
    finished_at: datetime | None
    pages: int
    calls_published: int
    # What the normalizer made of them (issue #18): stored = created + updated + unchanged (calls
    # the raw stream already held byte for byte count as unchanged).
    calls_stored: int
    calls_created: int
    calls_updated: int
    checkpoint: str | None
    error: str | None


class SyncRunPage(msgspec.Struct):
    items: list[SyncRunView]
    next_cursor: str | None


class SyncStateView(msgspec.Struct):
    integration_id: str
    workspace_id: str
    provider: str
    status: str
    integration_status: str
    watermark: datetime | None
    next_due_at: datetime | None
    next_reconcile_at: datetime | None
    last_synced_at: datetime | None
    last_run_id: str | None
    items_synced_total: int
    items_synced_last_run: int | None
    last_error: str | None
    consecutive_failures: int
    created_at: datetime  # the integration's (the gateway's): the order of GET /v1/sync-state's pages


_body_decoder = msgspec.json.Decoder(SyncRequestBody)


def _run_view(run: Any) -> SyncRunView:
    return SyncRunView(
        run_id=str(run["id"]),
        integration_id=str(run["integration_id"]),
        mode=run["mode"],
        trigger=run["trigger"],
        status=run["status"],
        window=TimeWindow(start=run["window_start"], end=run["window_end"]),
        limit=run["max_items"],
        created_at=run["created_at"],
        published_at=run["published_at"],
        started_at=run["started_at"],
        last_progress_at=run["last_progress_at"],
        resume_after=run["resume_after"],
        waiting_for=run["waiting_for"],
        finished_at=run["finished_at"],
        pages=run["pages"],
        calls_published=run["calls_published"],
        calls_stored=min(  # at most what was published (_progress.RunProgress.of says why)
            run["calls_published"],
            run["calls_created"] + run["calls_updated"] + run["calls_unchanged"] + run["calls_already_received"],
        ),
        calls_created=run["calls_created"],
        calls_updated=run["calls_updated"],
        checkpoint=run["checkpoint"],
        error=run["error"],
    )


def state_view(row: Any) -> SyncStateView:
    # The gateway's own flag wins: it knows first when credentials stop working.
    status = "reauth_required" if row["integration_status"] == "reauth_required" else (row["status"] or "pending")
    return SyncStateView(
        integration_id=str(row["integration_id"]),
        workspace_id=row["workspace_id"],
        provider=row["provider"],
        status=status,
        integration_status=row["integration_status"],
        watermark=row["watermark"],
        next_due_at=row["next_due_at"],
        next_reconcile_at=row["next_reconcile_at"],
        last_synced_at=row["last_synced_at"],
        last_run_id=str(row["last_run_id"]) if row["last_run_id"] else None,
        items_synced_total=row["items_synced_total"],
        items_synced_last_run=row["items_synced_last_run"],
        last_error=row["last_error"],
        consecutive_failures=row["consecutive_failures"],
        created_at=row["created_at"],
    )


def erased_error() -> ApiError:
    """What every route answers for an erased integration: its id is known, nothing of it is kept."""
    return ApiError(404, "integration_erased", "the integration was erased; nothing of it is kept or synced")


def _encode_cursor(run: Any) -> str:
    raw = f"{run['created_at'].isoformat()}|{run['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = raw.split("|")
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(run_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "bad_cursor", "the cursor is not one this API returned") from None


def admin_router(scheduler_of: Callable[[], Scheduler], admin: AdminToken | ManageGuard) -> Router:
    @post("/integrations/{integration_id:uuid}/syncs", status_code=202)
    async def trigger_sync(integration_id: FromPath[uuid.UUID], request: Request[Any, Any, Any]) -> RunAccepted:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY_BYTES} bytes")
        try:
            wanted = _body_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        scheduler = scheduler_of()
        now = scheduler.clock.now()

        try:
            preset = resolve(
                mode=wanted.mode, days=wanted.days, start=wanted.from_, end=wanted.to, limit=wanted.limit, now=now
            )
        except PlanError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None

        def plan_for(provider: Source, watermark: datetime | None) -> RunPlan:
            return scheduler.store.policy.manual_plan(
                mode=preset.mode,
                provider=provider,
                watermark=watermark,
                now=now,
                start=preset.start,
                end=preset.end,
                limit=preset.limit,
            )

        try:
            run = await scheduler.store.create_manual_run(integration_id, plan_for, now)
        except PlanError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        except IntegrationNotFound:
            raise ApiError(404, "integration_not_found", "no such integration") from None
        except IntegrationErased:
            raise erased_error() from None
        except IntegrationNotActive as exc:
            raise ApiError(409, "integration_not_active", f"the integration is {exc.status}") from None
        except RunActive:
            raise ApiError(409, "run_active", "a run of this integration is queued or running") from None
        # The run is committed; if this publish fails the due loop publishes it on its next tick.
        await scheduler.publish_run(run)
        return RunAccepted(run_id=str(run["id"]))

    # POST .../cancel rather than DELETE .../{run_id}: the run is not removed, it stays in the history
    # with status 'cancelled'; cancelling is an action on it (and a proxy or client retrying a DELETE
    # would expect the resource gone).
    @post("/integrations/{integration_id:uuid}/syncs/{run_id:uuid}/cancel", status_code=200)
    async def cancel_sync(integration_id: FromPath[uuid.UUID], run_id: FromPath[uuid.UUID]) -> SyncRunView:
        try:
            run = await scheduler_of().cancel(integration_id, run_id)
        except RunNotFound:
            raise ApiError(404, "run_not_found", "no such run of this integration") from None
        except RunNotActive as exc:
            raise ApiError(409, "run_finished", f"the run has finished already ({exc.status})") from None
        return _run_view(run)

    @get("/integrations/{integration_id:uuid}/syncs")
    async def list_syncs(
        integration_id: FromPath[uuid.UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> SyncRunPage:
        store = scheduler_of().store
        integration = await store.integration(integration_id)
        if integration is None:
            raise ApiError(404, "integration_not_found", "no such integration")
        if integration["status"] == ERASED:
            raise erased_error()
        after = _decode_cursor(cursor) if cursor else None
        runs = await store.runs_page(integration_id, limit + 1, after)
        more = len(runs) > limit
        runs = runs[:limit]
        return SyncRunPage(
            items=[_run_view(r) for r in runs], next_cursor=_encode_cursor(runs[-1]) if more and runs else None
        )

    @get("/integrations/{integration_id:uuid}/sync-state")
    async def integration_state(integration_id: FromPath[uuid.UUID]) -> SyncStateView:
        rows = await scheduler_of().store.states(integration_id=integration_id)
        if not rows:
            raise ApiError(404, "integration_not_found", "no such integration")
        if rows[0]["integration_status"] == ERASED:
            raise erased_error()
        return state_view(rows[0])

    @get(
        "/sync-state",
        summary="Sync states of a workspace, of integrations named, or (the admin's) of all; with limit, pages",
        description=(
            "Without `limit`: every integration that matches, oldest first (created_at, id). With `limit`: at"
            " most that many, newest first (created_at desc, id desc); when more remain the response has"
            ' `Link: </v1/sync-state?...&limit=N&cursor=...>; rel="next"` (the same filters), none on the'
            " last page. Filters all apply; `status` is the status the state answers."
        ),
        response_headers=[
            ResponseHeader(
                name="Link",
                documentation_only=True,
                description='with limit, when more remain: `</v1/sync-state?...&cursor=...>; rel="next"`',
            )
        ],
    )
    async def workspace_state(
        workspace_id: Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
        integration_id: Annotated[list[uuid.UUID] | None, QueryParameter(max_items=MAX_STATES)] = None,
        status: Annotated[
            list[SyncStatus] | None, QueryParameter(max_items=MAX_STATES, description="the state's status (any of)")
        ] = None,
        integration_status: Annotated[
            list[IntegrationStatus] | None,
            QueryParameter(max_items=MAX_STATES, description="the gateway's status of the integration (any of)"),
        ] = None,
        provider: Annotated[Provider | None, QueryParameter()] = None,
        limit: Annotated[
            int | None, QueryParameter(ge=1, le=MAX_STATE_PAGE, description=f"page size, 1 to {MAX_STATE_PAGE}")
        ] = None,
        cursor: Annotated[
            str | None,
            QueryParameter(max_length=MAX_CURSOR, description="from the previous page's Link rel=next (with limit)"),
        ] = None,
    ) -> Response[list[SyncStateView]]:
        """One workspace's integrations, or (the admin token only: the guard refuses a manage token
        that names no workspace) every integration's, in one answer: the console's overview of a
        thousand integrations asks once instead of once per workspace (issue #18's bench/console).
        ``integration_id`` (repeated, at most 500): only these (the console's page of a list); with
        ``workspace_id`` too, only those of that workspace. ``status``, ``integration_status`` and
        ``provider`` narrow it further (the console's list by status pages these, not every state)."""
        if limit is None and cursor is not None:
            raise ApiError(400, "invalid_cursor", "cursor pages need limit (the next page's Link has both)")
        if limit is not None and len(integration_id or ()) > MAX_PAGED_IDS:
            # The next page's Link repeats every id: 500 of them are ~26 KB, past what HTTP clients
            # and proxies read in one header (h11 16 KiB, nginx 4-8 KB). Ids are a page already.
            raise ApiError(400, "too_many_ids", f"with limit, at most {MAX_PAGED_IDS} integration_id")
        try:
            after = None if cursor is None else decode_keyset_cursor(cursor)
        except BadCursor as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from None
        rows = await scheduler_of().store.states(
            workspace_id=workspace_id,
            integration_ids=integration_id,
            statuses=status,
            integration_statuses=integration_status,
            provider=provider,
            erased=False,
            after=None if after is None else (after.at, after.id),
            limit=None if limit is None else limit + 1,  # one more tells whether a next page exists
        )
        items = [state_view(r) for r in rows]  # erased ones left out by the query
        if limit is None or len(items) <= limit:
            return Response(items)
        items = items[:limit]
        query: list[tuple[str, Any]] = [
            *(("workspace_id", w) for w in [workspace_id] if w is not None),
            *(("integration_id", str(i)) for i in integration_id or ()),
            *(("status", s) for s in status or ()),
            *(("integration_status", s) for s in integration_status or ()),
            *(("provider", p) for p in [provider] if p is not None),
            ("limit", limit),
            ("cursor", encode_keyset_cursor(items[-1].created_at, items[-1].integration_id)),
        ]
        return Response(items, headers={"Link": f'</v1/sync-state?{urlencode(query)}>; rel="next"'})

    return Router(
        path="/v1",
        guards=[admin],
        route_handlers=[trigger_sync, cancel_sync, list_syncs, integration_state, workspace_state],
    )
