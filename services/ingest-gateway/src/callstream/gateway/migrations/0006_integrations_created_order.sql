-- GET /v1/integrations?limit= pages newest first by the keyset (created_at, id) (#18: the console
-- pages the list instead of reading all of it). A page reads its rows off this index in order,
-- however many integrations there are, instead of sorting them all.
create index integrations_created_order on integrations (created_at desc, id desc);
-- One workspace's pages (a workspace_id filter, a manage token of one workspace).
create index integrations_workspace_created_order on integrations (workspace_id, created_at desc, id desc);
