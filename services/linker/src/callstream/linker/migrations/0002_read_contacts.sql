-- The linker reads contacts (GET /v1/contacts, GET /v1/customers/{id}); the normalizer's
-- migration 0004 made the tables, migrations of the linker run after the normalizer's.
grant select on contacts, contact_messages to callstream_linker_ro;
