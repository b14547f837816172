-- Integrations and API tokens. Other services read these tables (the scheduler finds what to pull,
-- the linker checks tokens); only the gateway writes them.

create table integrations (
    id              uuid primary key,
    workspace_id    text not null check (workspace_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    provider        text not null check (provider in ('fathom', 'gong')),
    status          text not null default 'active' check (status in ('active', 'disabled', 'reauth_required')),
    auth_kind       text not null check (auth_kind in ('api_key', 'basic', 'oauth')),
    -- AES-GCM envelopes (key id, nonce, ciphertext); never plaintext.
    credentials     bytea,
    webhook_secret  bytea,
    webhook_id      text,
    base_url        text,
    settings        jsonb not null default '{}'::jsonb,
    last_error      text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    disabled_at     timestamptz
);
create index integrations_workspace on integrations (workspace_id);

-- Bearer tokens for reads of named workspaces; only the SHA-256 of the token is kept
-- (callstream.contracts.hash_api_token).
create table api_tokens (
    id              uuid primary key,
    name            text not null,
    token_hash      text not null unique,
    workspace_ids   text[] not null,
    created_at      timestamptz not null default now(),
    revoked_at      timestamptz
);
