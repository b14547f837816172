-- Every visible message in the order the linker lists them (GET /v1/messages without workspace_id:
-- the admin token's every workspace, the console's /messages of an operator; newest first, keyset
-- pages on (sent_at, id)). messages_workspace_sent orders within one workspace only: across all of
-- them a page read every live row and sorted it. At 100,000 messages over 500 workspaces the first
-- page took 132 ms (a sequential scan and a top-N sort of 98,000 rows), the second 144 ms; with
-- this index 1.4 and 1.5 ms, a page 50,000 rows deep 0.4 ms: each reads one page of it.
-- Partial: tombstones are never listed, and the listing always says deleted_at is null.
create index messages_sent_order on messages (sent_at desc, id desc) where deleted_at is null;
