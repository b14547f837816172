-- What the normalizer made of each run's calls (SyncStored, issue #18 item 2): a run's progress goes
-- on past "published" to stored (created, updated, or unchanged: already stored as it is).
alter table sync_runs
    add column calls_created integer not null default 0,
    add column calls_updated integer not null default 0,
    add column calls_unchanged integer not null default 0,
    -- of calls_published, those CALLS_RAW already held byte for byte (stored before: nothing to report)
    add column calls_already_received integer not null default 0;

-- Each reported batch once, however often its SyncStored is delivered; they go with their run.
create table sync_run_batches (
    run_id  uuid not null references sync_runs (id) on delete cascade,
    batch   text not null,
    primary key (run_id, batch)
);
