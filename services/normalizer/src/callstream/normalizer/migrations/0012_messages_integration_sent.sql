-- An integration's messages in the order the linker lists them (GET /v1/messages?integration_id=,
-- the console's /messages of one integration: newest first, keyset pages on (sent_at, id)).
-- Without it the filter read every message of the workspace: on 100,000 messages of one workspace
-- and 1,000 integrations a page took 40-56 ms (a sequential scan, whatever the integration held),
-- 1 ms with this index; an integration with nothing stored, 45 ms and 0.1 ms. The erasure and
-- the listing reconciliation, which select an integration's rows, may use it too.
create index messages_integration_sent on messages (integration_id, sent_at desc, id desc)
    where integration_id is not null;
