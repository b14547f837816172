"""``GET /v1/integrations/{id}/health``: the checks the old integration's health query made, each
with a reason, from what the scheduler already knows (its sync state and runs, and the gateway's
``integrations`` row it reads anyway). The judging is free of I/O (:func:`judge`); one query reads.

Checks, in order: ``connected``, ``credentials_valid``, ``sync_ready``, ``has_synced``,
``last_run_ok``, ``has_messages``, ``schedule_active`` and, for Fathom, ``webhook_registered``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, get
from litestar.params import FromPath, QueryParameter

from callstream.runtime import AdminToken, ApiError, ManageGuard

from ._api import SyncStateView, erased_error, state_view
from ._clock import Clock
from ._store import EFFECTIVE_STATUS, ERASED, RUN_MOVED_AT, STATE_COLUMNS

# How the gateway words a refused credential in a run's error (``AuthFailed``: "fathom refused the
# credentials (HTTP 401)"). SyncFinished has no error code, so the text is what there is to read.
_REFUSED = re.compile(r"refused the credentials|\(HTTP 40[13]\)")

_READ = f"""
select i.id, i.provider, i.status as integration_status, i.webhook_id is not null as webhook_registered,
       i.webhook_secret is not null as has_webhook_secret,
       s.status as sync_status, s.next_due_at, s.last_synced_at, s.last_error,
       coalesce(s.items_synced_total, 0) as items_synced_total,
       a.id as active_id, a.status as active_status, a.created_at as active_created_at,
       a.moved_at as active_moved_at,
       l.id as last_id, l.status as last_status, l.error as last_error_run, l.finished_at as last_finished_at
from integrations i
left join sync_state s on s.integration_id = i.id
left join lateral (select id, status, created_at, {RUN_MOVED_AT} as moved_at
                   from sync_runs
                   where integration_id = i.id and status in ('queued', 'running') limit 1) a on true
-- The state's last settled run first (finish times can tie), else the last finished: two index
-- reads (its key; sync_runs_settled) rather than sorting every run of the integration.
left join lateral (select id, status, error, finished_at
                   from ((select id, status, error, finished_at, 0 as rank from sync_runs
                          where id = s.last_run_id and integration_id = i.id and status not in ('queued', 'running'))
                         union all
                         (select id, status, error, finished_at, 1 from sync_runs
                          where integration_id = i.id and status not in ('queued', 'running')
                          order by finished_at desc nulls last, created_at desc
                          limit 1)) settled
                   order by rank limit 1) l on true
where i.id = any($1::uuid[])
"""
# The summary's (GET /v1/sync-summary): every integration counted, and those that need a person
# with their state. A run is stuck by the health's sync_ready rule: it has not moved (queued, started,
# its last progress, the end of a wait it announced) since $1. Reconnect and stuck first (they are
# few, and a page of failing ones must not hide them), then the most failures.
_COUNTS = f"""
select i.provider, i.status as integration_status, {EFFECTIVE_STATUS} as status, count(*)::int as count
from integrations i left join sync_state s on s.integration_id = i.id
where i.status <> 'erased'
group by 1, 2, 3 order by 1, 2, 3
"""
_NEEDING = f"""
select *, count(*) over ()::int as listed_of
from (select {STATE_COLUMNS},
             i.id in (select r.integration_id from sync_runs r
                      where r.status in ('queued', 'running') and {RUN_MOVED_AT} < $1)
                 as stuck
      from integrations i left join sync_state s on s.integration_id = i.id
      where i.status in ('active', 'reauth_required')) f
where integration_status = 'reauth_required'
   or (integration_status = 'active' and (status in ('error', 'reauth_required') or stuck))
order by coalesce(integration_status = 'reauth_required' or status = 'reauth_required' or stuck, false) desc,
         consecutive_failures desc, workspace_id, integration_id
limit $2
"""
# One batch answer's most integrations (the console asks for the rows of its overview that need it).
MAX_BATCH = 500


class Check(msgspec.Struct):
    name: str
    ok: bool
    reason: str


class IntegrationHealth(msgspec.Struct):
    integration_id: str
    provider: str
    healthy: bool
    checks: list[Check]


class HealthPage(msgspec.Struct):
    items: list[IntegrationHealth]


class StatusCount(msgspec.Struct):
    provider: str
    integration_status: str  # the gateway's: active, disabled, reauth_required
    status: str  # the sync state's as a state view words it (pending when never synced)
    count: int


class Attention(msgspec.Struct):
    state: SyncStateView
    health: IntegrationHealth


class SyncSummary(msgspec.Struct):
    counts: list[StatusCount]
    attention: list[Attention]
    attention_total: int  # may be more than those listed (``attention_limit``)


DEFAULT_ATTENTION = 200


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _sync_ready(row: Mapping[str, Any], *, now: datetime, stuck_after: timedelta) -> tuple[bool, str]:
    """A run is stuck when it has not moved for longer than ``stuck_after``, not when it is old: a
    healthy backfill of tens of thousands of meetings at a provider's rate limit runs for many hours.
    A queued run last moved when it was queued."""
    run_id, run_status, created_at, moved_at = (
        row["active_id"], row["active_status"], row["active_created_at"], row["active_moved_at"]
    )  # fmt: skip
    if run_id is None:
        return True, "no run is queued or running"
    moved_at = moved_at or created_at
    if run_status == "queued":
        if now - moved_at > stuck_after:
            return False, f"run {run_id} has been queued for {_ago(now - moved_at)} (more than {_ago(stuck_after)})"
        return True, f"run {run_id} is queued since {_ago(now - moved_at)}"
    if now - moved_at > stuck_after:
        return (
            False,
            f"run {run_id} is {run_status} but has not moved for {_ago(now - moved_at)} (more than {_ago(stuck_after)})",
        )
    since = f"run {run_id} is {run_status} since {_ago(now - created_at)}"
    if moved_at > now:  # a wait it announced (Retry-After, a spent quota)
        return True, f"{since}, waiting until {moved_at.isoformat()}"
    return True, f"{since}, last moved {_ago(now - moved_at)} ago"


def _webhook(row: Mapping[str, Any]) -> tuple[bool, str]:
    """Fathom can send new meetings when the gateway can verify them: it holds a webhook secret, either
    from the webhook it registered (``webhook_id`` kept) or given by hand at creation (the webhook
    registered outside callstream, so no id)."""
    if row["webhook_registered"]:
        return True, "the gateway registered a webhook with Fathom: new meetings arrive as they are ready"
    if row["has_webhook_secret"]:
        return (
            True,
            "a webhook secret was given (the webhook registered outside callstream): the gateway verifies"
            " the new meetings Fathom sends",
        )
    return False, "no webhook secret and no registered webhook: new meetings arrive only with the scheduled pulls"


def judge(row: Mapping[str, Any], *, now: datetime, stuck_after: timedelta) -> IntegrationHealth:
    status = row["integration_status"]
    provider = row["provider"]
    checks: list[Check] = []

    def check(name: str, ok: bool, reason: str) -> None:
        checks.append(Check(name, ok, reason))

    check(
        "connected",
        status == "active",
        "the integration is active" if status == "active" else f"the integration is {status}",
    )

    last_status, last_error = row["last_status"], row["last_error_run"]
    if status == "reauth_required" or row["sync_status"] == "reauth_required" or last_status == "reauth_required":
        check("credentials_valid", False, f"{provider} refused the credentials: connect the integration again")
    elif last_status == "error" and last_error and _REFUSED.search(last_error):
        check("credentials_valid", False, f"the last run failed: {last_error}")
    else:
        check("credentials_valid", True, "no run was refused its credentials")

    check("sync_ready", *_sync_ready(row, now=now, stuck_after=stuck_after))

    synced = row["last_synced_at"]
    check(
        "has_synced", synced is not None, f"last synced {synced.isoformat()}" if synced else "no run has succeeded yet"
    )

    if last_status is None:
        check("last_run_ok", True, "no run has finished yet")
    elif last_status in ("error", "reauth_required"):
        check("last_run_ok", False, f"the last run ended {last_status}: {last_error or 'no reason given'}")
    else:
        check("last_run_ok", True, f"the last run ended {last_status}")

    total = row["items_synced_total"]
    check("has_messages", total > 0, f"{total} calls synced" if total else "no call synced yet")

    due = row["next_due_at"]
    if status != "active":
        check("schedule_active", False, f"nothing is scheduled while the integration is {status}")
    elif row["sync_status"] == "reauth_required":
        check("schedule_active", False, "nothing is scheduled until the integration is connected again")
    elif due is None:
        check("schedule_active", False, "not scheduled yet (the due loop picks it up within a few seconds)")
    else:
        check("schedule_active", True, f"next run due {due.isoformat()}")

    if provider == "fathom":
        check("webhook_registered", *_webhook(row))
    return IntegrationHealth(
        integration_id=str(row["id"]), provider=provider, healthy=all(c.ok for c in checks), checks=checks
    )


def health_router(
    pool: Callable[[], asyncpg.Pool],
    clock: Clock,
    stuck_after: timedelta,
    admin: AdminToken | ManageGuard,
) -> Router:
    # ``admin``: the admin token, or (a ManageGuard) also a manage token of the integration's
    # workspace; another workspace's integration is a 404 like one that does not exist.
    @get("/integrations/{integration_id:uuid}/health")
    async def integration_health(integration_id: FromPath[uuid.UUID]) -> IntegrationHealth:
        row = await pool().fetchrow(_READ, [integration_id])
        if row is None:
            raise ApiError(404, "integration_not_found", "no such integration")
        if row["integration_status"] == ERASED:
            raise erased_error()
        return judge(row, now=clock.now(), stuck_after=stuck_after)

    @get("/health")
    async def integrations_health(
        integration_id: Annotated[list[uuid.UUID], QueryParameter(min_items=1, max_items=MAX_BATCH)],
    ) -> HealthPage:
        """The health of many integrations in one answer (the admin token's: the guard refuses a
        manage token on a route naming no workspace), in the order asked; an unknown or erased one
        is left out. The console's overview asks it for the rows that need a health check instead
        of once per row (issue #18's bench/console: a hundred rows were a hundred requests)."""
        rows = {row["id"]: row for row in await pool().fetch(_READ, list(dict.fromkeys(integration_id)))}
        now = clock.now()
        return HealthPage(
            items=[
                judge(rows[key], now=now, stuck_after=stuck_after)
                for key in dict.fromkeys(integration_id)
                if key in rows and rows[key]["integration_status"] != ERASED
            ]
        )

    @get("/sync-summary")
    async def sync_summary(
        attention_limit: Annotated[int, QueryParameter(ge=0, le=MAX_BATCH)] = DEFAULT_ATTENTION,
    ) -> SyncSummary:
        """Every integration counted by provider, status at the gateway and sync status, and those
        that need a person (reconnect, failing, a run stuck) with their state and health, the most
        failures first: the console's overview in one answer, without reading every state (issue
        #18's bench/console: a thousand states were ~450 KB a page, and the health of the rows that
        may need a person one more request after them). The admin token's."""
        now = clock.now()
        # One snapshot: the rows listed are among those counted, each health read with them.
        async with pool().acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            counts = await conn.fetch(_COUNTS)
            rows = await conn.fetch(_NEEDING, now - stuck_after, attention_limit)
            healths = {row["id"]: row for row in await conn.fetch(_READ, [r["integration_id"] for r in rows])}
            if rows:
                total = rows[0]["listed_of"]
            else:  # none listed: none at all, unless none were asked for (attention_limit 0)
                total = (
                    await conn.fetchval(f"select count(*) from ({_NEEDING}) n", now - stuck_after, None)
                    if not attention_limit
                    else 0
                )
        return SyncSummary(
            counts=[StatusCount(**dict(c)) for c in counts],
            attention=[
                Attention(
                    state=state_view(r), health=judge(healths[r["integration_id"]], now=now, stuck_after=stuck_after)
                )
                for r in rows
            ],
            attention_total=int(total),
        )

    return Router(path="/v1", guards=[admin], route_handlers=[integration_health, integrations_health, sync_summary])
