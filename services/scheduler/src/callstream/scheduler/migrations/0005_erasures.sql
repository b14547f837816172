-- The scheduler's part of each erasure (issue #19), one row per erasure it carried out: the counts
-- it reported, so that a redelivered request (after a crash between commit and report) reports the
-- same counts again. Counts only: never an id or a name of what was erased.
create table scheduler_erasures (
    erasure_id      text primary key,
    counts          jsonb not null,
    finished_at     timestamptz not null
);
