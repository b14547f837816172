-- Erasure (#19): an erased integration keeps only its row's identity (id, workspace_id, provider,
-- auth_kind, status 'erased', timestamps) so that its id stays known (webhooks 404, no reconnect
-- revives it); every secret, host and setting of it is gone. The scheduler pulls only 'active'
-- integrations, so 'erased' is never scheduled.
alter table integrations drop constraint integrations_status_check;
alter table integrations add constraint integrations_status_check
    check (status in ('active', 'disabled', 'reauth_required', 'erased'));

-- One erasure: asked for by the admin API, each service's part recorded as its ErasureFinished
-- arrives. parts: {"<service>": {"counts": {...}, "finished_at": "..."}}; the job is 'done' once
-- the gateway's, the normalizer's and the scheduler's parts are in. Ids and counts only, never
-- what was erased.
create table erasure_jobs (
    id               uuid primary key,
    scope            text not null check (scope in ('integration', 'workspace')),
    workspace_id     text not null check (workspace_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    integration_ids  text[] not null,
    requested_at     timestamptz not null default now(),
    status           text not null default 'running' check (status in ('running', 'done')),
    parts            jsonb not null default '{}'::jsonb,
    finished_at      timestamptz,
    -- The gateway's own part as it announces it (again, the same, when a DELETE is retried after
    -- the broker failed); gateway_finished_at is null until its checkpoints are deleted too.
    gateway_counts       jsonb not null default '{}'::jsonb,
    gateway_finished_at  timestamptz
);
create index erasure_jobs_workspace on erasure_jobs (workspace_id, requested_at);
create index erasure_jobs_integrations on erasure_jobs using gin (integration_ids);
