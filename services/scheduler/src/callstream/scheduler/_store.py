"""PostgreSQL adapter: sync state, runs and the job log. Every time comes from the caller's clock.

The one-active-run rule is the partial unique index ``sync_runs_one_active``: inserts go through
``on conflict ... do nothing``, so two replicas (or a manual trigger racing the loop) can never
both start a run of one integration.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from callstream.contracts import SyncFinished, SyncProgress, SyncRequested, SyncStored, TimeWindow

from ._policy import Policy, RunPlan, StateBefore, next_on_grid, state_after_run

ACTIVE = ("queued", "running")
# The gateway's status of an integration whose data was erased (issue #19): its row stays so that its
# id is known, and nothing of it is kept or made here again (no sync state, no run).
ERASED = "erased"
# When a run last moved, as the stale-run rule and the health's sync_ready count it: queued (created),
# started, its last progress, or the end of a wait it announced (greatest skips a null resume_after).
RUN_MOVED_AT = "greatest(coalesce(last_progress_at, started_at, created_at), resume_after)"
# A sync state as the API answers it: the integration's (the gateway's table) and its state's columns.
STATE_COLUMNS = """i.id as integration_id, i.workspace_id, i.provider, i.status as integration_status,
    s.status, s.watermark, s.next_due_at, s.last_synced_at, s.last_run_id,
    coalesce(s.items_synced_total, 0) as items_synced_total, s.items_synced_last_run,
    s.last_error, coalesce(s.consecutive_failures, 0) as consecutive_failures, s.next_reconcile_at,
    i.created_at"""
# The status a state view answers (``_api.state_view``): the gateway's reauth_required wins (it knows
# first when credentials stop working); an integration the loop has not seen yet is pending.
EFFECTIVE_STATUS = (
    "case when i.status = 'reauth_required' then 'reauth_required' else coalesce(s.status, 'pending') end"
)

RETENTION_JOB = "retention"
# A job row left 'running' this long by a replica that died may be taken over.
JOB_TAKEOVER = timedelta(hours=1)

_INSERT_RUN = """
insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, window_start, window_end,
                       max_items, status, created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10)
on conflict (integration_id) where status in ('queued', 'running') do nothing
returning *
"""


PoolSource = Callable[[], asyncpg.Pool]


class RunActive(Exception):
    """The integration already has a queued or running run."""


class IntegrationNotFound(Exception):
    pass


class IntegrationErased(Exception):
    """The integration was erased: nothing of it is kept, nothing is synced again."""


class IntegrationNotActive(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class StaleRun:
    run_id: uuid.UUID
    request_seq: int | None


def sync_request(run: Mapping[str, Any]) -> SyncRequested:
    return SyncRequested(
        run_id=str(run["id"]),
        integration_id=str(run["integration_id"]),
        workspace_id=run["workspace_id"],
        provider=run["provider"],
        mode=run["mode"],
        window=TimeWindow(start=run["window_start"], end=run["window_end"]),
        limit=run["max_items"],
        requested_at=run["created_at"],
        reconcile=run["trigger"] == "reconcile",
    )


class SyncStore:
    def __init__(self, pool: PoolSource, policy: Policy) -> None:
        self._pool_source = pool
        self._policy = policy

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def _pool(self) -> asyncpg.Pool:
        return self._pool_source()

    # -- the due loop -------------------------------------------------------------------------

    async def ensure_states(self, now: datetime) -> int:
        """A sync state for every integration that has none yet, due at once (first run within a loop),
        its first reconciliation one period from now. None for an erased one: its erasure deleted it."""
        async with self._pool.acquire() as conn:
            result = await conn.execute(
                """insert into sync_state (integration_id, workspace_id, provider, status, cadence_anchor, next_due_at,
                                           next_reconcile_at, created_at, updated_at)
                   select i.id, i.workspace_id, i.provider, 'pending', $1, $1,
                          case i.provider when 'gong' then $2::timestamptz when 'fathom' then $3::timestamptz end, $1, $1
                   from integrations i
                   where i.status <> $4
                     and not exists (select 1 from sync_state s where s.integration_id = i.id)
                   on conflict (integration_id) do nothing""",
                now,
                self._policy.next_reconcile("gong", now),
                self._policy.next_reconcile("fathom", now),
                ERASED,
            )
            # States made before Fathom was reconciled have none planned: the first one period from now.
            await conn.execute(
                """update sync_state set next_reconcile_at = $1
                   where provider = 'fathom' and next_reconcile_at is null""",
                self._policy.next_reconcile("fathom", now),
            )
        return int(result.split()[-1])

    async def claim_due(self, now: datetime, limit: int = 100) -> list[asyncpg.Record]:
        """Create a queued run for every due integration without an active one; return the runs."""
        created: list[asyncpg.Record] = []
        async with self._pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                """select s.*, i.settings as integration_settings
                   from sync_state s join integrations i on i.id = s.integration_id
                   where i.status = 'active'
                     and (s.reauth_at is null or i.updated_at > s.reauth_at)
                     and (s.next_due_at <= $1 or s.next_reconcile_at <= $1)
                     and not exists (select 1 from sync_runs r
                                     where r.integration_id = s.integration_id and r.status in ('queued', 'running'))
                   order by s.next_due_at
                   limit $2
                   for update of s skip locked""",
                now,
                limit,
            )
            for state in due:
                cadence = self._policy.cadence(state["integration_settings"])
                regular = state["next_due_at"] <= now
                if regular:
                    plan = RunPlan(
                        "incremental",
                        "schedule",
                        self._policy.incremental_window(state["provider"], state["watermark"], now),
                    )
                else:
                    plan = RunPlan("range", "reconcile", self._policy.reconcile_window(state["provider"], now))
                run = await conn.fetchrow(
                    _INSERT_RUN,
                    uuid.uuid4(),
                    state["integration_id"],
                    state["workspace_id"],
                    state["provider"],
                    plan.mode,
                    plan.trigger,
                    plan.window.start,
                    plan.window.end,
                    plan.limit,
                    now,
                )
                if run is None:  # a manual run won the race; stay due, try again next loop
                    continue
                await conn.execute(
                    """update sync_state set status = 'syncing', last_run_id = $2, reauth_at = null, updated_at = $3,
                              next_due_at = case when $4 then $5 else next_due_at end,
                              next_reconcile_at = case when $4 then next_reconcile_at else $6 end
                       where integration_id = $1""",
                    state["integration_id"],
                    run["id"],
                    now,
                    regular,
                    next_on_grid(state["cadence_anchor"], now, cadence),
                    self._policy.next_reconcile(state["provider"], now),
                )
                created.append(run)
        return created

    async def unpublished_runs(self, limit: int = 100) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                """select * from sync_runs where published_at is null and status = 'queued'
               order by created_at limit $1""",
                limit,
            )
        )

    async def mark_published(self, run_id: uuid.UUID, now: datetime, seq: int) -> str | None:
        """Returns the run's status: one cancelled while it was published must be withdrawn again."""
        status: str | None = await self._pool.fetchval(
            """update sync_runs set published_at = coalesce(published_at, $2), request_seq = $3 where id = $1
               returning status""",
            run_id,
            now,
            seq,
        )
        return status

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def expire_stale(self, now: datetime) -> list[StaleRun]:
        """Fail active runs with no sign of life for too long, and schedule their retry."""
        before = self._policy.stale_before(now)
        minutes = self._policy.stale_after_seconds // 60
        expired: list[StaleRun] = []
        async with self._pool.acquire() as conn, conn.transaction():
            runs = await conn.fetch(
                f"""update sync_runs set status = 'error', finished_at = $1,
                          error = $3
                   where status in ('queued', 'running') and {RUN_MOVED_AT} < $2
                   returning *""",
                now,
                before,
                f"stale: no progress for {minutes} min; failed by the scheduler and retried",
            )
            for run in runs:
                await self._settle(conn, run, outcome="error", reported_watermark=None, finished_at=now, now=now)
                expired.append(StaleRun(run["id"], run["request_seq"]))
        return expired

    # -- events from the pull workers ---------------------------------------------------------

    async def apply_progress(self, event: SyncProgress) -> bool:
        """Idempotent: counters only grow, times only move forward; a finished run is left alone (a
        cancelled one still takes the counts of the page it had in flight).
        The newest event says whether the run waits (``resume_after``) or goes on."""
        status = await self._pool.execute(
            """update sync_runs set status = case when status = 'cancelled' then status else 'running' end,
                      started_at = least(coalesce(started_at, $2), $2),
                      resume_after = case when $2 >= coalesce(last_progress_at, $2) then $6 else resume_after end,
                      waiting_for = case when $2 >= coalesce(last_progress_at, $2) then $7 else waiting_for end,
                      last_progress_at = greatest(coalesce(last_progress_at, $2), $2),
                      checkpoint = case when $3 >= pages then coalesce($5, checkpoint) else checkpoint end,
                      pages = greatest(pages, $3),
                      calls_published = greatest(calls_published, $4),
                      calls_already_received = greatest(calls_already_received, $8)
               where id = $1 and status in ('queued', 'running', 'cancelled')""",
            _uuid(event.run_id),
            event.at,
            event.page,
            event.calls_published,
            event.checkpoint,
            event.resume_after,
            event.waiting_for,
            event.calls_already_received,
        )
        return str(status) != "UPDATE 0"

    async def apply_stored(self, event: SyncStored) -> bool:
        """Add a batch's counts to its run once (a redelivery finds the batch recorded). A run
        settled already still takes them: the normalizer stores what a run published after it ends."""
        run_id = _uuid(event.run_id)
        if run_id is None:
            return False
        status = await self._pool.execute(
            """with batch as (
                   insert into sync_run_batches (run_id, batch)
                   select id, $2 from sync_runs where id = $1
                   on conflict do nothing
                   returning run_id
               )
               update sync_runs set calls_created = calls_created + $3, calls_updated = calls_updated + $4,
                      calls_unchanged = calls_unchanged + $5
               where id = (select run_id from batch)""",
            run_id,
            event.batch,
            event.created,
            event.updated,
            event.unchanged,
        )
        return str(status) != "UPDATE 0"

    async def apply_finished(self, event: SyncFinished, now: datetime) -> bool:
        """Settle the run and its integration's state once; a redelivery finds the run settled."""
        run_id = _uuid(event.run_id)
        if run_id is None:
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow(
                """update sync_runs set status = $2, finished_at = $3,
                          started_at = coalesce(started_at, $3),
                          last_progress_at = greatest(coalesce(last_progress_at, $3), $3),
                          pages = greatest(pages, $4), calls_published = greatest(calls_published, $5),
                          checkpoint = coalesce($6, checkpoint), error = $7,
                          resume_after = null, waiting_for = null,
                          calls_already_received = greatest(calls_already_received, $8)
                   where id = $1 and status in ('queued', 'running')
                   returning *""",
                run_id,
                event.status,
                event.at,
                event.pages,
                event.calls_published,
                event.checkpoint,
                event.error,
                event.calls_already_received,
            )
            if run is None:
                return False
            await self._settle(
                conn, run, outcome=event.status, reported_watermark=event.watermark, finished_at=event.at, now=now
            )
            return True

    async def _settle(
        self,
        conn: asyncpg.Connection,
        run: asyncpg.Record,
        *,
        outcome: Any,
        reported_watermark: datetime | None,
        finished_at: datetime,
        now: datetime,
    ) -> None:
        state = await conn.fetchrow(
            """select s.*, i.settings as integration_settings
               from sync_state s left join integrations i on i.id = s.integration_id
               where s.integration_id = $1 for update of s""",
            run["integration_id"],
        )
        if state is None:
            return
        after = state_after_run(
            self._policy,
            StateBefore(
                watermark=state["watermark"],
                consecutive_failures=state["consecutive_failures"],
                next_due_at=state["next_due_at"],
                next_reconcile_at=state["next_reconcile_at"],
                last_synced_at=state["last_synced_at"],
                last_error=state["last_error"],
            ),
            outcome=outcome,
            mode=run["mode"],
            trigger=run["trigger"],
            window=TimeWindow(start=run["window_start"], end=run["window_end"]),
            reported_watermark=reported_watermark,
            error=run["error"],
            finished_at=finished_at,
            cadence=self._policy.cadence(state["integration_settings"]),
            now=now,
        )
        await conn.execute(
            """update sync_state set status = $2, watermark = $3, consecutive_failures = $4, next_due_at = $5,
                      next_reconcile_at = $6, last_synced_at = $7, last_error = $8, reauth_at = $9,
                      items_synced_total = items_synced_total + $10, items_synced_last_run = $10,
                      last_run_id = $11, updated_at = $12
               where integration_id = $1""",
            run["integration_id"],
            after.status,
            after.watermark,
            after.consecutive_failures,
            after.next_due_at,
            after.next_reconcile_at,
            after.last_synced_at,
            after.last_error,
            after.reauth_at,
            run["calls_published"],
            run["id"],
            now,
        )

    # -- manual runs and reads ----------------------------------------------------------------

    async def integration(self, integration_id: uuid.UUID) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            "select id, workspace_id, provider, status, settings from integrations where id = $1", integration_id
        )

    async def create_manual_run(self, integration_id: uuid.UUID, plan_for: Any, now: datetime) -> asyncpg.Record:
        """``plan_for(provider, watermark) -> RunPlan``; raises RunActive when a run is queued or running."""
        async with self._pool.acquire() as conn, conn.transaction():
            integration = await conn.fetchrow(
                "select id, workspace_id, provider, status from integrations where id = $1", integration_id
            )
            if integration is None:
                raise IntegrationNotFound
            if integration["status"] == ERASED:
                raise IntegrationErased
            if integration["status"] != "active":
                raise IntegrationNotActive(integration["status"])
            await conn.execute(
                """insert into sync_state (integration_id, workspace_id, provider, status, cadence_anchor,
                                           next_due_at, next_reconcile_at, created_at, updated_at)
                   values ($1, $2, $3, 'pending', $4, $4, $5, $4, $4)
                   on conflict (integration_id) do nothing""",
                integration_id,
                integration["workspace_id"],
                integration["provider"],
                now,
                self._policy.next_reconcile(integration["provider"], now),
            )
            state = await conn.fetchrow(
                "select watermark from sync_state where integration_id = $1 for update", integration_id
            )
            plan: RunPlan = plan_for(integration["provider"], state["watermark"])
            run = await conn.fetchrow(
                _INSERT_RUN,
                uuid.uuid4(),
                integration_id,
                integration["workspace_id"],
                integration["provider"],
                plan.mode,
                plan.trigger,
                plan.window.start,
                plan.window.end,
                plan.limit,
                now,
            )
            if run is None:
                raise RunActive
            await conn.execute(
                """update sync_state set status = 'syncing', last_run_id = $2, reauth_at = null, updated_at = $3
                   where integration_id = $1""",
                integration_id,
                run["id"],
                now,
            )
            return run

    async def runs_page(
        self, integration_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[asyncpg.Record]:
        if after is None:
            return list(
                await self._pool.fetch(
                    """select * from sync_runs where integration_id = $1
                   order by created_at desc, id desc limit $2""",
                    integration_id,
                    limit,
                )
            )
        return list(
            await self._pool.fetch(
                """select * from sync_runs where integration_id = $1 and (created_at, id) < ($3, $4)
               order by created_at desc, id desc limit $2""",
                integration_id,
                limit,
                after[0],
                after[1],
            )
        )

    async def states(
        self,
        *,
        integration_id: uuid.UUID | None = None,
        workspace_id: str | None = None,
        integration_ids: Sequence[uuid.UUID] | None = None,
        statuses: Sequence[str] | None = None,
        integration_statuses: Sequence[str] | None = None,
        provider: str | None = None,
        erased: bool = True,
        after: tuple[datetime | None, uuid.UUID] | None = None,
        limit: int | None = None,
    ) -> Sequence[asyncpg.Record]:
        """Integrations with their state (an integration the loop has not seen yet reads as pending);
        the filters given all apply. ``statuses`` match the status a state view answers
        (:data:`EFFECTIVE_STATUS`), ``integration_statuses`` the gateway's; ``erased=False`` leaves
        erased integrations out. Without ``limit``: every match, oldest first. With it: at most
        ``limit``, newest first (``created_at desc, id desc``, the gateway's index
        ``integrations_created_order``), those before ``after`` (a keyset page)."""
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        # Only the conditions given, so the planner sees plain conditions (and the created_at
        # index), not "$1 is null or ..." that a generic plan cannot use an index for.
        where = ["true"]
        if integration_id is not None:
            where.append(f"i.id = {arg(integration_id)}::uuid")
        if workspace_id is not None:
            where.append(f"i.workspace_id = {arg(workspace_id)}::text")
        if integration_ids is not None:
            where.append(f"i.id = any({arg(list(integration_ids))}::uuid[])")
        if statuses is not None:
            where.append(f"{EFFECTIVE_STATUS} = any({arg(list(statuses))}::text[])")
        if integration_statuses is not None:
            where.append(f"i.status = any({arg(list(integration_statuses))}::text[])")
        if provider is not None:
            where.append(f"i.provider = {arg(provider)}::text")
        if not erased:
            where.append(f"i.status <> {arg(ERASED)}::text")
        # ORDER BY names the table's columns: a bare name could be a select-list alias (the
        # gateway's bare "id" was its id::text, sorted as text and off the index).
        order = "i.created_at, i.id"
        if limit is not None:
            if after is not None:
                where.append(f"(i.created_at, i.id) < ({arg(after[0])}::timestamptz, {arg(after[1])}::uuid)")
            order = f"i.created_at desc, i.id desc limit {arg(limit)}::int"
        return list(
            await self._pool.fetch(
                f"""select {STATE_COLUMNS}
               from integrations i left join sync_state s on s.integration_id = i.id
               where {" and ".join(where)}
               order by {order}""",
                *args,
            )
        )

    # -- retention ----------------------------------------------------------------------------

    async def run_retention(self, now: datetime) -> dict[str, Any] | None:
        """Once per UTC day across all replicas: delete finished runs older than the retention."""
        period: date = now.date()
        claimed = await self._pool.fetchval(
            """insert into scheduler_jobs (job, period, status, started_at) values ($1, $2, 'running', $3)
               on conflict (job, period) do update
                   set status = 'running', attempts = scheduler_jobs.attempts + 1, started_at = $3,
                       finished_at = null
                   where scheduler_jobs.status = 'error'
                      or (scheduler_jobs.status = 'running' and scheduler_jobs.started_at < $4)
               returning attempts""",
            RETENTION_JOB,
            period,
            now,
            now - JOB_TAKEOVER,
        )
        if claimed is None:
            return None
        cutoff = self._policy.retention_cutoff(now)
        try:
            result = await self._pool.execute(
                "delete from sync_runs where created_at < $1 and status not in ('queued', 'running')", cutoff
            )
        except Exception as exc:
            await self._finish_job(period, now, "error", {"error": type(exc).__name__, "cutoff": cutoff.isoformat()})
            raise
        detail = {"deleted_runs": int(result.split()[-1]), "cutoff": cutoff.isoformat()}
        await self._finish_job(period, now, "success", detail)
        return detail

    async def _finish_job(self, period: date, now: datetime, status: str, detail: dict[str, Any]) -> None:
        await self._pool.execute(
            """update scheduler_jobs set status = $3, finished_at = $4, detail = $5
               where job = $1 and period = $2""",
            RETENTION_JOB,
            period,
            status,
            now,
            detail,
        )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
