-- A customer's messages in the order the linker reads them (GET /v1/customers: each customer's
-- latest message and count; GET /v1/customers/{id} and /v1/messages?customer_id=: newest first).
-- On (customer_id) alone, max(sent_at) read every message of every customer on the page from the
-- heap: 50 customers over 200,000 messages took 353 ms a page, 15 ms with this index, and grew
-- with the messages. It replaces that index (same leading column, same predicate).
create index messages_customer_sent on messages (customer_id, sent_at desc, id desc) where customer_id is not null;
drop index messages_customer;
