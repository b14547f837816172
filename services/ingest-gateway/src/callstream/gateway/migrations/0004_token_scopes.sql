-- API token scopes (#18): 'read' (the linker's reads, every token issued before this) and
-- 'manage' (the gateway's integration routes and connect sessions, for the token's own
-- workspaces). A manage token also reads. The linker checks only that a token exists and is not
-- revoked, so it keeps accepting every token whatever its scopes.
alter table api_tokens add column scopes text[] not null default '{read}'
    check (scopes <@ array['read', 'manage']::text[] and cardinality(scopes) >= 1);

-- Connect sessions (#18): an admin or a manage token asks for one; the browser that opens its URL
-- is bound to it by a cookie (only the cookie's SHA-256 is kept, browser_hash), and the OAuth
-- state it starts (oauth_states.connect_session) can complete only in that browser. The session
-- id in the URL is kept only as its SHA-256 too. A session is opened once.
create table connect_sessions (
    id_hash         text primary key,
    workspace_id    text not null check (workspace_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    provider        text not null check (provider in ('fathom', 'gong')),
    return_url      text not null,
    token_id        uuid,  -- the manage token that asked (null: the admin token)
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    browser_hash    text unique,
    opened_at       timestamptz
);
create index connect_sessions_expiry on connect_sessions (expires_at);

alter table oauth_states add column connect_session text references connect_sessions (id_hash) on delete cascade;
-- The PKCE code verifier (where the provider's app takes PKCE), sealed like every credential.
alter table oauth_states add column code_verifier bytea;
