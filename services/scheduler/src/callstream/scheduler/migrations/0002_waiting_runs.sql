-- A run that waits on purpose (a provider's Retry-After, a spent daily quota) says until when, so the
-- stale-run rule counts from then instead of failing a live run.
alter table sync_runs add column resume_after timestamptz;
alter table sync_runs add column waiting_for text;
