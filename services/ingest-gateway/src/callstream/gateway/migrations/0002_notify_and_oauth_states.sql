-- Every change of an integration wakes the gateways' webhook-secret caches (LISTEN on this channel;
-- the payload is the integration id), so a new, disabled or re-keyed integration takes effect at
-- once without the webhook path reading the database.
create function gateway_integration_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('callstream_gateway_integrations', coalesce(new.id, old.id)::text);
    return null;
end
$$;

create trigger integrations_notify
    after insert or update or delete on integrations
    for each row execute function gateway_integration_changed();

-- One-time OAuth states: only a hash of the state is stored, and a callback consumes the row.
create table oauth_states (
    state_hash      text primary key,
    provider        text not null check (provider in ('fathom', 'gong')),
    workspace_id    text not null check (workspace_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    integration_id  uuid,
    redirect_uri    text not null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null
);
create index oauth_states_expiry on oauth_states (expires_at);
