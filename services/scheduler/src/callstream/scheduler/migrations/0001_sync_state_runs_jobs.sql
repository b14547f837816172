-- The scheduler's own tables. It reads `integrations` (the gateway's) and never writes it.
-- Every time here is written by the scheduler from its clock (never now()), so that tests can
-- drive it with a simulated clock.

-- One row per integration: where its syncing stands and when it is next due.
create table sync_state (
    integration_id          uuid primary key,
    workspace_id            text not null,
    provider                text not null check (provider in ('fathom', 'gong')),
    status                  text not null default 'pending'
                            check (status in ('pending', 'syncing', 'success', 'error', 'reauth_required')),
    -- Provider time up to which every call is known to have been pulled.
    watermark               timestamptz,
    -- Regular runs fall on cadence_anchor + k * cadence; a failure may bring next_due_at forward (retry).
    cadence_anchor          timestamptz not null,
    next_due_at             timestamptz not null,
    next_reconcile_at       timestamptz,
    consecutive_failures    integer not null default 0,
    last_run_id             uuid,
    last_synced_at          timestamptz,
    items_synced_total      bigint not null default 0,
    items_synced_last_run   bigint,
    last_error              text,
    -- When a run reported reauth_required; scheduling resumes once the integration changes after it.
    reauth_at               timestamptz,
    created_at              timestamptz not null,
    updated_at              timestamptz not null
);
create index sync_state_due on sync_state (next_due_at);
create index sync_state_workspace on sync_state (workspace_id);

create table sync_runs (
    id                  uuid primary key,
    integration_id      uuid not null,
    workspace_id        text not null,
    provider            text not null check (provider in ('fathom', 'gong')),
    mode                text not null check (mode in ('incremental', 'backfill', 'range', 'latest')),
    trigger             text not null check (trigger in ('schedule', 'manual', 'reconcile')),
    window_start        timestamptz,
    window_end          timestamptz,
    max_items           integer,
    status              text not null default 'queued'
                        check (status in ('queued', 'running', 'success', 'error', 'reauth_required')),
    created_at          timestamptz not null,
    -- The run row is its own outbox: published_at stays null until JetStream acknowledged SyncRequested.
    published_at        timestamptz,
    request_seq         bigint,
    started_at          timestamptz,
    last_progress_at    timestamptz,
    finished_at         timestamptz,
    pages               integer not null default 0,
    calls_published     integer not null default 0,
    checkpoint          text,
    error               text
);
-- Never two runs of one integration at once, whatever the number of scheduler replicas.
create unique index sync_runs_one_active on sync_runs (integration_id) where status in ('queued', 'running');
create index sync_runs_history on sync_runs (integration_id, created_at desc, id desc);
create index sync_runs_unpublished on sync_runs (created_at) where published_at is null and status = 'queued';
create index sync_runs_created on sync_runs (created_at);

-- Periodic jobs (retention), one row per job and period, so that one replica runs each and it is on record.
create table scheduler_jobs (
    job             text not null,
    period          date not null,
    status          text not null check (status in ('running', 'success', 'error')),
    attempts        integer not null default 1,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    detail          jsonb not null default '{}'::jsonb,
    primary key (job, period)
);
