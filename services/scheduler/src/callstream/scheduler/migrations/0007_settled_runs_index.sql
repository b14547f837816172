-- An integration's last settled run (its health's "no error in the last run"), read by the newest
-- finish without sorting every run it ever had: at a month of hourly runs a health read sorted 720
-- rows per integration (bench/console, issue #18).
create index sync_runs_settled on sync_runs (integration_id, finished_at desc nulls last, created_at desc)
    where status not in ('queued', 'running');
