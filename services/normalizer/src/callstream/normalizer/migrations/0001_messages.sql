-- Messages, customers and what hangs off them. The normalizer writes; the linker reads
-- (with a read-only role, possibly on a replica).

create table customers (
    id               uuid primary key default gen_random_uuid(),
    workspace_id     text not null,
    domain           text not null,
    name             text,
    industry         text,
    website          text,
    external_system  text,             -- 'hubspot' for a Gong call's HubSpot account, null for a domain guess
    external_id      text,
    attributes       jsonb not null default '{}'::jsonb,  -- every CRM field as received, deals, ...
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    unique (workspace_id, domain)
);

create table messages (
    id                 uuid primary key default gen_random_uuid(),
    workspace_id       text not null,
    source             text not null check (source in ('fathom', 'gong')),
    external_id        text not null,
    integration_id     text,
    title              text,
    content            text not null default '',
    channel_name       text,
    channel_id         text,
    author_name        text,
    author_id          text,
    author_email       text,
    sent_at            timestamptz,
    message_metadata   jsonb not null default '{}'::jsonb,
    ai_insights        jsonb,
    customer_id        uuid references customers (id),
    content_hash       text not null,      -- of the mapped message: equal hash, nothing to write or emit
    source_updated_at  timestamptz,        -- the provider's own time for this version
    version            integer not null default 1,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    unique (workspace_id, source, external_id)
);
-- 20 KB transcripts: pglz compression, not I/O, limits the upsert rate (shared/MEASURED.md).
alter table messages alter column content set storage external;
alter table messages alter column message_metadata set storage external;
create index messages_customer on messages (customer_id) where customer_id is not null;
create index messages_workspace_sent on messages (workspace_id, sent_at desc, id desc);
create index messages_workspace_created on messages (workspace_id, created_at, id);

create table message_participants (
    message_id   uuid not null references messages (id) on delete cascade,
    position     integer not null,
    name         text,
    email        text,
    affiliation  text,                     -- 'internal', 'external' or 'unknown'
    speaker_id   text,
    role         text,                     -- 'recorder', 'invitee', 'attendee', ...
    primary key (message_id, position)
);
create index message_participants_email on message_participants (lower(email)) where email is not null;

create table features (
    workspace_id  text not null,
    id            text not null,
    name          text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    primary key (workspace_id, id)
);

-- A link may name a message that has not arrived yet: (source, external_id) is kept and the
-- message_id filled in when it does.
create table message_features (
    workspace_id  text not null,
    feature_id    text not null,
    source        text not null,
    external_id   text not null,
    message_id    uuid references messages (id) on delete cascade,
    linked_at     timestamptz not null default now(),
    primary key (workspace_id, feature_id, source, external_id),
    foreign key (workspace_id, feature_id) references features (workspace_id, id)
);
create index message_features_message on message_features (message_id);
create index message_features_pending on message_features (workspace_id, source, external_id) where message_id is null;

-- The provider app host last seen per workspace (Gong hosts are per tenant), for constructed links.
create table provider_hosts (
    workspace_id  text not null,
    source        text not null,
    host          text not null,
    seen_at       timestamptz not null default now(),
    primary key (workspace_id, source)
);

-- Transactional outbox: written in the same transaction as the message, published in id order.
create table outbox (
    id            bigserial primary key,
    subject       text not null,
    payload       bytea not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);
create index outbox_unpublished on outbox (id) where published_at is null;
