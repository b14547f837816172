-- Tombstones (issue #19): a message the provider no longer has keeps its row, id and provider
-- identity, so the linker can answer 410 Gone with the reason and a late, older copy of the call
-- cannot bring it back; its content, metadata, people and data points are erased
-- (``_tombstones.py``). Section 2 (erasure) and 3 (retention) reuse the same columns and reasons.
--
-- Columns the linker reads (a contract, like a subject): messages.deleted_at, messages.deleted_reason.
alter table messages
    add column deleted_at timestamptz,
    add column deleted_reason text check (deleted_reason in ('provider_deleted', 'erased', 'retention'));

-- A tombstone comes back to life when the store writes a real version over it (the provider lists
-- the call again, observed after it was tombstoned: the store's own rule lets only newer versions
-- through). A trigger, so the store's statements (normalizer_store_batch) stay as they are.
create function normalizer_revive_tombstone() returns trigger language plpgsql as $$
begin
    new.deleted_at := null;
    new.deleted_reason := null;
    return new;
end
$$;
create trigger messages_revive_tombstone before update on messages for each row
    when (old.deleted_at is not null and new.deleted_at is not distinct from old.deleted_at
          and new.content_hash is distinct from old.content_hash)
    execute function normalizer_revive_tombstone();
