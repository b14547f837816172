"""Erasure (#19): ``DELETE /v1/integrations/{id}?erase=true``, ``DELETE /v1/workspaces/{id}`` and
``GET /v1/erasures/{id}``, and the worker that records each service's part of a job.

An erasure is a job each service takes its part of. The gateway's part is done before the job is
announced: the integration is disabled at once (webhooks 404), its Fathom webhook deleted at the
provider, then in one transaction its secrets, host and settings wiped (the row keeps its id, its
workspace, its provider and ``status='erased'``), its OAuth states deleted and the job row written;
then its pull checkpoints are purged from the KV bucket. Only then are ``ErasureRequested`` and the
gateway's own ``ErasureFinished`` published, and the answer is 202 once both are acknowledged (503
with ``Retry-After`` otherwise: the job stays, and the same DELETE again announces the same job,
with the same ``Nats-Msg-Id``s, so nothing is doubled). The other services answer with their
``ErasureFinished``; the job is ``done`` once the gateway's, the normalizer's and the scheduler's
parts are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import nats.errors
from nats.aio.msg import Msg

from callstream.contracts import (
    ERASURES_REQUESTED,
    GATEWAY_ERASURES_CONSUMER,
    ErasureFinished,
    ErasureRequested,
    ErasureScope,
    erasures_finished_subject,
)
from callstream.runtime import ApiError, ServiceRuntime, Unprocessable, consume, get_logger, wait_for_postgres

from . import _fathom_api
from ._context import GatewayContext
from ._integrations import HostNotAllowed
from .pull import CheckpointStore, PullSettings

log = get_logger(__name__)

# Every service that keeps something of an integration reports its part; the job is done with all.
SERVICES: tuple[str, ...] = ("gateway", "normalizer", "scheduler")
_WORKSPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ErasureAccepted(msgspec.Struct):
    erasure_id: str
    status: str
    status_url: str


class ErasurePart(msgspec.Struct):
    status: str  # "running" until the service's ErasureFinished is recorded, then "done"
    counts: dict[str, int]
    finished_at: datetime | None


class ErasureView(msgspec.Struct):
    erasure_id: str
    scope: str
    workspace_id: str
    integration_ids: list[str]
    status: str
    requested_at: datetime
    finished_at: datetime | None
    parts: dict[str, ErasurePart]
    counts: dict[str, int]  # summed over the parts


_JOB_COLUMNS = (
    "id::text, scope, workspace_id, integration_ids, requested_at, status, parts, finished_at,"
    " gateway_counts, gateway_finished_at"
)


def erasure_view(job: asyncpg.Record) -> ErasureView:
    parts: dict[str, ErasurePart] = {}
    total: dict[str, int] = {}
    recorded: dict[str, Any] = job["parts"] or {}
    for service in SERVICES:
        part = recorded.get(service)
        if part is None:
            parts[service] = ErasurePart(status="running", counts={}, finished_at=None)
            continue
        counts = {str(k): int(v) for k, v in (part.get("counts") or {}).items()}
        finished = part.get("finished_at")
        parts[service] = ErasurePart(
            status="done",
            counts=counts,
            finished_at=datetime.fromisoformat(finished) if finished else None,
        )
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return ErasureView(
        erasure_id=job["id"],
        scope=job["scope"],
        workspace_id=job["workspace_id"],
        integration_ids=list(job["integration_ids"]),
        status=job["status"],
        requested_at=job["requested_at"],
        finished_at=job["finished_at"],
        parts=parts,
        counts=total,
    )


def _accepted(job: asyncpg.Record) -> ErasureAccepted:
    return ErasureAccepted(job["id"], job["status"], f"/v1/erasures/{job['id']}")


async def deregister_webhook(ctx: GatewayContext, key: uuid.UUID, row: asyncpg.Record) -> bool | None:
    """Delete the integration's webhook at Fathom (``row``: provider, base_url, webhook_id):
    ``True`` deleted, ``False`` Fathom could not be reached or refused (logged; the webhook stays
    on record), ``None`` nothing to delete. Credentials are read while they still exist."""
    integration_id = str(key)
    if not row["webhook_id"] or row["provider"] != "fathom":
        return None
    try:
        try:
            access = await ctx.integrations.access(integration_id)
        except HostNotAllowed as exc:  # stored before the allow-list, or the list has shrunk since
            raise _fathom_api.FathomApiError(str(exc)) from None
        headers = _fathom_api.auth_headers(
            api_key=access.api_key if access else None, access_token=access.access_token if access else None
        )
        api_base = row["base_url"] or ctx.settings.fathom_api_url  # access() checked it against the list
        await _fathom_api.delete_webhook(ctx.http, api_base, headers, row["webhook_id"])
    except _fathom_api.FathomApiError as exc:
        log.warning("fathom webhook not deleted", integration_id=integration_id, error=str(exc))
        await ctx.db.execute(
            "update integrations set last_error = $2, updated_at = now() where id = $1",
            key,
            f"webhook not deleted: {exc}"[:500],
        )
        return False
    await ctx.db.execute(
        "update integrations set webhook_id = null, updated_at = now() where id = $1 and webhook_id = $2",
        key,
        row["webhook_id"],
    )
    return True


class Erasures:
    """The gateway's part of erasures (its routes call these)."""

    def __init__(self, ctx: GatewayContext, pull: PullSettings) -> None:
        self._ctx = ctx
        self._pull = pull
        self._unavailable = {"Retry-After": str(ctx.settings.retry_after_seconds)}

    @property
    def _db(self) -> asyncpg.Pool:
        return self._ctx.db

    async def job(self, erasure_id: str) -> ErasureView | None:
        try:
            key = uuid.UUID(erasure_id)
        except ValueError:
            return None
        row = await self._db.fetchrow(f"select {_JOB_COLUMNS} from erasure_jobs where id = $1", key)
        return None if row is None else erasure_view(row)

    async def erase_integration(self, key: uuid.UUID) -> ErasureAccepted:
        row = await self._db.fetchrow("select workspace_id, status from integrations where id = $1", key)
        if row is None:
            raise ApiError(404, "unknown_integration", "no integration has this id")
        if row["status"] == "erased":
            job = await self._latest_job(str(key))
            if job is not None:
                return await self._announce(job)
        return await self._erase("integration", row["workspace_id"], [key])

    async def erase_workspace(self, workspace_id: str) -> ErasureAccepted:
        if not _WORKSPACE.match(workspace_id):
            raise ApiError(400, "invalid_workspace_id", "a workspace id is 1-64 of A-Z a-z 0-9 _ -")
        job = await self._running_workspace_job(self._db, workspace_id)
        if job is not None:
            return await self._announce(job)
        ids = [
            r["id"] for r in await self._db.fetch("select id from integrations where workspace_id = $1", workspace_id)
        ]
        return await self._erase("workspace", workspace_id, ids)

    async def _latest_job(self, integration_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._db.fetchrow(
            f"select {_JOB_COLUMNS} from erasure_jobs where integration_ids @> array[$1::text]"
            " order by requested_at desc limit 1",
            integration_id,
        )
        return row

    @staticmethod
    async def _running_workspace_job(
        conn: asyncpg.Pool | asyncpg.Connection, workspace_id: str
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(
            f"select {_JOB_COLUMNS} from erasure_jobs where scope = 'workspace' and workspace_id = $1"
            " and status = 'running' order by requested_at desc limit 1",
            workspace_id,
        )
        return row

    async def _erase(self, scope: ErasureScope, workspace_id: str, ids: Sequence[uuid.UUID]) -> ErasureAccepted:
        ctx = self._ctx
        # Webhooks refused at once, while the provider is asked to stop sending them.
        rows = await self._db.fetch(
            """update integrations set status = 'disabled', disabled_at = coalesce(disabled_at, now()),
                      updated_at = now()
               where id = any($1::uuid[]) and status <> 'erased'
               returning id, provider, base_url, webhook_id""",
            list(ids),
        )
        for row in rows:
            await ctx.changed(str(row["id"]))
        # At once: a workspace's Fathom down would otherwise cost its timeout once per integration.
        outcomes = await asyncio.gather(*(deregister_webhook(ctx, row["id"], row) for row in rows))
        deleted = sum(outcome is True for outcome in outcomes)
        job, fresh = await self._wipe(scope, workspace_id, ids, deleted)
        for integration_id in job["integration_ids"]:
            await ctx.changed(integration_id)
        if fresh:
            log.info(
                "erasure requested",
                erasure_id=job["id"],
                scope=scope,
                workspace_id=workspace_id,
                integrations=len(job["integration_ids"]),
            )
        return await self._announce(job)

    async def _wipe(
        self,
        scope: ErasureScope,
        workspace_id: str,
        ids: Sequence[uuid.UUID],
        webhooks_deleted: int,
    ) -> tuple[asyncpg.Record, bool]:
        """The transaction: the integrations' secrets gone, their OAuth states (and a workspace's
        tokens) deleted, the job written. One erasure at a time per workspace (an advisory lock), so
        two DELETEs at once make one job. Returns the job and whether it is new."""
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute(
                "select pg_advisory_xact_lock(hashtextextended('callstream-erasure:' || $1, 0))", workspace_id
            )
            arg: str | list[uuid.UUID]
            if scope == "workspace":
                running = await self._running_workspace_job(conn, workspace_id)
                if running is not None:
                    return running, False
                # Every integration of the workspace now (one created since the caller looked too).
                where, arg = "workspace_id = $1", workspace_id
            else:
                where, arg = "id = any($1::uuid[])", list(ids)
            targets = await conn.fetch(
                "select id::text, status, credentials is not null as credentials,"
                " webhook_secret is not null as secret, webhook_id is not null as webhook"
                f" from integrations where {where} order by id for update",
                arg,
            )
            if scope == "integration" and targets and all(t["status"] == "erased" for t in targets):
                earlier = await conn.fetchrow(
                    f"select {_JOB_COLUMNS} from erasure_jobs where integration_ids @> $1::text[]"
                    " order by requested_at desc limit 1",
                    [t["id"] for t in targets],
                )
                if earlier is not None:  # erased by a DELETE that ran at the same time
                    return earlier, False
            live = [t for t in targets if t["status"] != "erased"]
            target_ids = [t["id"] for t in targets]
            await conn.execute(
                """update integrations set status = 'erased', credentials = null, webhook_secret = null,
                          webhook_id = null, base_url = null, settings = '{}'::jsonb, last_error = null,
                          disabled_at = coalesce(disabled_at, now()), updated_at = now()
                   where id = any($1::uuid[])""",
                target_ids,
            )
            counts = {
                "integrations": len(live),
                "credentials": sum(t["credentials"] for t in targets),
                "webhook_secrets": sum(t["secret"] for t in targets),
                "webhook_registrations": webhooks_deleted,
                # Fathom unreachable: its webhook stays registered there, but the secret is gone
                # and the integration erased, so every delivery is answered 404 and kept nowhere.
                # (those whose deletion failed keep their webhook id until this update).
                "webhook_registrations_not_deleted": sum(t["webhook"] for t in targets),
            }
            oauth = await conn.fetchval(
                "with gone as (delete from oauth_states where integration_id = any($1::uuid[])"
                " or ($2 and workspace_id = $3) returning 1) select count(*) from gone",
                target_ids,
                scope == "workspace",
                workspace_id,
            )
            counts["oauth_states"] = int(oauth)
            if scope == "workspace":
                # Its connect sessions (hashed ids, return URLs) go with it.
                await conn.execute("delete from connect_sessions where workspace_id = $1", workspace_id)
                # A token that named only this workspace goes; the others forget it.
                dropped = await conn.fetchval(
                    "with gone as (delete from api_tokens where $1 = any(workspace_ids)"
                    " and cardinality(array_remove(workspace_ids, $1)) = 0 returning 1) select count(*) from gone",
                    workspace_id,
                )
                edited = await conn.fetchval(
                    "with changed as (update api_tokens set workspace_ids = array_remove(workspace_ids, $1)"
                    " where $1 = any(workspace_ids) returning 1) select count(*) from changed",
                    workspace_id,
                )
                counts["api_tokens_deleted"] = int(dropped)
                counts["api_tokens_edited"] = int(edited)
            job = await conn.fetchrow(
                f"""insert into erasure_jobs (id, scope, workspace_id, integration_ids, gateway_counts)
                    values ($1, $2, $3, $4, $5) returning {_JOB_COLUMNS}""",
                uuid.uuid4(),
                scope,
                workspace_id,
                target_ids,
                counts,
            )
            return job, True

    async def _forget_checkpoints(self, job: asyncpg.Record) -> asyncpg.Record:
        """The gateway's last step: the pull checkpoints (and reconciliation listings, which hold
        provider call ids) of the job's integrations; the gateway's part is then finished."""
        runtime = self._ctx.runtime
        pull = self._pull
        # No overall deadline: each request to the broker has its own timeout, so a broker away
        # fails this at once, while a large bucket is read to its end (a deadline would fail it,
        # and every retry, for ever).
        store = await CheckpointStore.open(
            runtime.broker.js,
            pull.checkpoint_bucket,
            ttl_seconds=pull.checkpoint_ttl_days * 86_400,
            replicas=self._ctx.settings.stream_replicas,
        )
        forgotten = await store.forget_integrations(job["integration_ids"])
        row: asyncpg.Record = await self._db.fetchrow(
            f"""update erasure_jobs set gateway_counts = gateway_counts || jsonb_build_object('checkpoints',
                       coalesce((gateway_counts->>'checkpoints')::int, 0) + $2),
                   gateway_finished_at = coalesce(gateway_finished_at, now())
                where id = $1::uuid returning {_JOB_COLUMNS}""",
            job["id"],
            forgotten,
        )
        return row

    async def _announce(self, job: asyncpg.Record) -> ErasureAccepted:
        """Finish the gateway's part if a failure left it open, then publish the request and the
        gateway's part, awaiting both acks (the same ids every time: a retry is never doubled)."""
        if job["status"] == "done":
            return _accepted(job)
        broker = self._ctx.runtime.broker
        if not broker.is_connected:
            raise ApiError(503, "broker_unavailable", "the event broker is unreachable; retry later", self._unavailable)
        try:
            if job["gateway_finished_at"] is None:
                job = await self._forget_checkpoints(job)
            requested = ErasureRequested(
                erasure_id=job["id"],
                scope=job["scope"],
                workspace_id=job["workspace_id"],
                integration_ids=list(job["integration_ids"]),
                requested_at=job["requested_at"],
            )
            finished = ErasureFinished(
                erasure_id=job["id"],
                service="gateway",
                counts=dict(job["gateway_counts"]),
                finished_at=job["gateway_finished_at"],
            )
            js = broker.js
            timeout = self._ctx.settings.publish_timeout_seconds
            await js.publish(
                ERASURES_REQUESTED,
                msgspec.json.encode(requested),
                timeout=timeout,
                headers={"Nats-Msg-Id": job["id"]},
            )
            await js.publish(
                erasures_finished_subject("gateway"),
                msgspec.json.encode(finished),
                timeout=timeout,
                headers={"Nats-Msg-Id": f"{job['id']}:finished:gateway"},
            )
        except (nats.errors.Error, ConnectionError, TimeoutError) as exc:
            log.warning("erasure not announced", erasure_id=job["id"], error=type(exc).__name__)
            raise ApiError(
                503,
                "broker_unavailable",
                "the erasure is recorded but the event broker did not confirm it; send the same request again",
                self._unavailable,
            ) from None
        return _accepted(job)

    async def resume(self, stopping: asyncio.Event) -> None:
        """The worker that makes erasures resumable: a job whose gateway part was never recorded
        (the gateway died between its transaction and the publishes, or the broker refused them
        and nobody sent the DELETE again) is announced again, its checkpoints purged first if that
        step was not reached. Safe on every replica at once: the same ids, and every part is
        idempotent."""
        every = self._ctx.settings.erasure_resume_seconds
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
            if stopping.is_set():
                return
            await self._ctx.runtime.broker.wait_connected()
            jobs = await self._db.fetch(
                f"select {_JOB_COLUMNS} from erasure_jobs where status = 'running' and not parts ? 'gateway'"
                " and requested_at < now() - make_interval(secs => $1) order by requested_at limit 100",
                every,
            )
            for job in jobs:
                try:
                    await self._announce(job)
                except ApiError:  # the broker again: the next round tries again
                    break
                log.info("erasure announced again", erasure_id=job["id"])


async def record_part(pool: asyncpg.Pool, data: bytes) -> bool:
    """Record one service's ``ErasureFinished`` into its job; the first report of a part is kept
    (a redelivery or a repeat changes nothing). Returns whether the job changed."""
    try:
        finished = msgspec.json.decode(data, type=ErasureFinished)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"{type(exc).__name__}: {exc}") from exc
    try:
        key = uuid.UUID(finished.erasure_id)
    except ValueError:
        log.warning("erasure part for an id that is no job of this gateway", service=finished.service)
        return False
    part = {"counts": dict(finished.counts), "finished_at": finished.finished_at.isoformat()}
    changed = await pool.fetchval(
        """update erasure_jobs set
               parts = parts || jsonb_build_object($2::text, $3::jsonb),
               status = case when (parts || jsonb_build_object($2::text, $3::jsonb)) ?& $4::text[]
                             then 'done' else status end,
               finished_at = case when (parts || jsonb_build_object($2::text, $3::jsonb)) ?& $4::text[]
                                  then coalesce(finished_at, now()) else finished_at end
           where id = $1 and not parts ? $2
           returning status""",
        key,
        finished.service,
        part,
        list(SERVICES),
    )
    if changed is None:
        exists = await pool.fetchval("select 1 from erasure_jobs where id = $1", key)
        if not exists:
            log.warning("erasure part for an unknown job", erasure_id=finished.erasure_id, service=finished.service)
        return False
    log.info("erasure part recorded", erasure_id=finished.erasure_id, service=finished.service, job_status=changed)
    return True


async def erasure_worker(rt: ServiceRuntime) -> None:
    """The worker ``build_app`` registers: each ``erasures.finished.<service>`` into its job."""
    await rt.broker.wait_connected()

    async def handle(msg: Msg) -> None:
        await record_part(rt.db, msg.data)

    await consume(
        rt.broker.js,
        GATEWAY_ERASURES_CONSUMER,
        handle,
        rt.stopping,
        recover=lambda: wait_for_postgres(rt.db, rt.stopping),
    )
