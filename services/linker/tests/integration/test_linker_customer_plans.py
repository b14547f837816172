"""The customers endpoints at scale: a customer's message count, latest message and message page
are read from an index, never from every message of the customer (a page of 50 customers over
200,000 messages took 353 ms without it, 15 ms with it, and grew with the messages)."""

from __future__ import annotations

import json
import uuid

import asyncpg

from callstream.linker import _contacts


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    [row] = await conn.fetch(f"explain (format json) {sql}", *args)
    return json.dumps(json.loads(row[0]))


async def test_a_customers_latest_message_is_one_index_entry(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # Forbid the full reads so the plan shows what the indexes allow, whatever the table's size.
        await conn.execute("set enable_seqscan = off; set enable_sort = off")
        customer = uuid.uuid4()
        latest = await _plan(conn, "select max(m.sent_at) from messages m where m.customer_id = $1", customer)
        # max() as "the first entry of an index in order" (PostgreSQL's min/max optimisation).
        assert '"Node Type": "Limit"' in latest, latest
        assert "Index Only Scan" in latest or "Index Scan" in latest, latest
        # The customers page runs it once per customer: the same plan inside it (its own Limit,
        # and the page's).
        page = await _plan(
            conn,
            f"select {_contacts._CUSTOMER_COLUMNS}, {_contacts._COUNTS} from customers cu"
            " where cu.workspace_id = $1 order by cu.domain limit 51",
            "acme",
        )
        assert page.count('"Node Type": "Limit"') >= 2, page
    finally:
        await conn.close()
