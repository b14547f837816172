-- Values extracted from a message (the product's WorkspaceDataPoint), each with the moment of the
-- recording it came from and the extractor that produced it. Written only by the normalizer from
-- `datapoints.recorded`; one row per (message, key, feature, extractor name).
create table data_points (
    id                   uuid primary key default gen_random_uuid(),
    -- The keyset order of the linker's pages (newest first): ids are random, this is not.
    seq                  bigint generated always as identity unique,
    workspace_id         text not null,
    message_id           uuid not null references messages (id) on delete cascade,
    feature_id           text,
    data_point_key       text not null,
    data_point_category  text not null,
    numeric_value        double precision,
    integer_value        bigint,
    text_value           text,
    evidence_t           double precision check (evidence_t is null or evidence_t >= 0),
    evidence_quote       text,
    extractor_name       text not null,
    extractor_version    text not null,
    -- The version as numbers ('1.10' after '1.9'): a newer version replaces the row, an older never.
    extractor_version_order integer[] not null,
    event_id             text not null,
    recorded_at          timestamptz not null,   -- when the linker accepted it
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    check (num_nonnulls(numeric_value, integer_value, text_value) = 1),
    foreign key (workspace_id, feature_id) references features (workspace_id, id),
    -- A data point without a feature is one per message too: nulls are not distinct (PostgreSQL 15+).
    unique nulls not distinct (message_id, data_point_key, feature_id, extractor_name)
);
create index data_points_message on data_points (message_id, seq desc);
create index data_points_feature on data_points (workspace_id, feature_id, seq desc) where feature_id is not null;

-- The linker reads data points with its read-only role. Roles are cluster-wide and the linker's
-- own migration (run after this service's) creates it; creating it here as well, the same way,
-- lets this grant stand on its own whichever runs first.
do $$
begin
    if not exists (select from pg_roles where rolname = 'callstream_linker_ro') then
        create role callstream_linker_ro nologin;
    end if;
exception when duplicate_object then
    null;
end $$;
grant select on data_points to callstream_linker_ro;
