-- A run can be cancelled (POST /v1/integrations/{id}/syncs/{run_id}/cancel): a queued one never
-- starts, a running one stops at its next page. 'cancelled' is a finished status, outside the
-- one-active-run index, so the integration can be synced again at once.
alter table sync_runs drop constraint sync_runs_status_check;
alter table sync_runs add constraint sync_runs_status_check
    check (status in ('queued', 'running', 'success', 'error', 'reauth_required', 'cancelled'));
