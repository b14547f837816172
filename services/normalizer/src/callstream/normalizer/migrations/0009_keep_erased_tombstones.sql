-- A tombstone made by erasure or retention (issue #19, 2 and 3) never comes back: the provider
-- still has the call, so a later pull (the hourly lookback, the weekly reconciliation, a backfill)
-- would otherwise write it over the tombstone and the 0007 trigger revive it, content and all.
-- Only a 'provider_deleted' tombstone may be revived (the provider lists the call again). Any
-- update of such a row is skipped (a BEFORE trigger returning null): the store's upsert then writes
-- nothing and announces nothing for it. Named to fire before messages_revive_tombstone
-- (triggers fire in name order).
create function normalizer_keep_erased_tombstone() returns trigger language plpgsql as $$
begin
    return null;
end
$$;
create trigger messages_keep_erased_tombstone before update on messages for each row
    when (old.deleted_reason in ('erased', 'retention'))
    execute function normalizer_keep_erased_tombstone();
