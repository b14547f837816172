-- A deletion at the provider is "a reconcile window that no longer lists a call it listed before"
-- (issue #19, 1c). A stored message is not always one its integration's listing returns: Fathom
-- lists only the org's own recordings without ``recorded_by[]``, while a recording shared by
-- someone outside the org arrives by webhook (``shared_external_recordings``). So each message keeps
-- when a complete listing of its integration last named it (``_tombstones.apply_listing`` sets it
-- for the ids listed), and only a message listed before is judged missing by a later listing.
-- Null: never listed (stored by webhook or a pull, or before this column existed).
alter table messages add column last_listed_at timestamptz;

-- The mark is its integration's: when another integration of the workspace stores the call (two
-- Fathom integrations sharing a recording), the row becomes that one's, whose listing never named
-- it, so the mark goes. A trigger, so the store's statements (normalizer_store_batch) stay as they are.
create function normalizer_unlist_on_new_integration() returns trigger language plpgsql as $$
begin
    new.last_listed_at := null;
    return new;
end
$$;
create trigger messages_listed_by_its_integration before update on messages for each row
    when (new.integration_id is distinct from old.integration_id)
    execute function normalizer_unlist_on_new_integration();
