-- Retention (issue #19, 3): per workspace, how long its messages are kept (null or no row: for
-- ever). Set through the normalizer's admin API; a periodic job makes older messages tombstones
-- with reason 'retention' (``_retention.py``), the way a deletion at the provider does.
create table workspace_settings (
    workspace_id           text primary key,
    message_retention_days integer check (message_retention_days between 1 and 36500),
    updated_at             timestamptz not null default now()
);
