"""Contacts (migration 0004): the external participants of stored calls, one per workspace and
email, counted per distinct message, on real PostgreSQL through the store the consumer uses."""

from __future__ import annotations

from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._store import store_batch

CONTACT_SQL = (
    "select c.email, c.name, c.title, c.call_count, c.first_seen, c.last_seen, cu.domain as customer_domain"
    " from contacts c left join customers cu on cu.id = c.customer_id where c.workspace_id = $1 order by c.email"
)


async def contacts(pool, workspace_id="ws1"):
    return {r["email"]: dict(r) for r in await pool.fetch(CONTACT_SQL, workspace_id)}


async def store(pool, *raws):
    async with pool.acquire() as conn:
        return await store_batch(conn, [map_raw_call(raw) for raw in raws])


async def test_external_participants_become_contacts_and_internal_people_do_not(pool, kit):
    await store(pool, kit.raw_call(kit.fathom_meeting()), kit.raw_call(kit.gong_bundle(0)))
    found = await contacts(pool)
    assert set(found) == {
        "k.ashworth-lindqvist@tallowbrook-capital.com",
        "priya.vandermeer.demo@gmail.com",
        "ops-room@example.com",
        "teodor.vance@harborline-freight.example",
        "ines.halloway@harborline-freight.example",
    }
    teodor = found["teodor.vance@harborline-freight.example"]
    assert (teodor["name"], teodor["title"], teodor["call_count"]) == ("Teodor Vance", "Director of Operations", 1)
    assert teodor["customer_domain"] == "harborline-freight.example"
    assert teodor["first_seen"] == teodor["last_seen"]
    assert teodor["first_seen"].isoformat() == "2026-01-14T16:02:11+00:00"
    kwabena = found["k.ashworth-lindqvist@tallowbrook-capital.com"]
    assert (kwabena["name"], kwabena["title"], kwabena["customer_domain"]) == (
        "Kwabena Ashworth-Lindqvist",
        None,
        "tallowbrook-capital.com",
    )
    assert found["priya.vandermeer.demo@gmail.com"]["customer_domain"] is None  # free mail names no company
    assert found["ops-room@example.com"]["name"] is None
    # internal people stay only in the message's participants
    internal = await pool.fetchval("select count(*) from message_participants where affiliation = 'internal'")
    assert internal >= 3
    assert not [e for e in found if "quillmere" in e or "quillfern" in e]


async def test_redelivery_never_counts_a_call_twice(pool, kit):
    raw = kit.raw_call(kit.fathom_meeting())
    for _ in range(3):
        await store(pool, raw)
    await store(pool, raw, raw)  # and twice in one batch
    found = await contacts(pool)
    assert {c["call_count"] for c in found.values()} == {1}
    assert await pool.fetchval("select count(*) from contact_messages") == 3


async def test_counts_first_and_last_seen_follow_the_calls(pool, kit):
    first = kit.fathom_meeting()
    later = kit.fathom_meeting(
        recording_id=2,
        recording_start_time="2026-03-02T09:00:00Z",
        recording_end_time="2026-03-02T09:30:00Z",
        calendar_invitees=[
            # the same person, the address in other case and a new display name
            {
                "name": "Kwabena A.-L.",
                "email": "K.Ashworth-Lindqvist@Tallowbrook-Capital.com",
                "email_domain": "tallowbrook-capital.com",
                "is_external": True,
            }
        ],
    )
    # stored out of order: the later call first
    await store(pool, kit.raw_call(later, external_id="2"))
    await store(pool, kit.raw_call(first))
    kwabena = (await contacts(pool))["k.ashworth-lindqvist@tallowbrook-capital.com"]
    assert kwabena["call_count"] == 2
    assert kwabena["first_seen"].isoformat() == "2026-02-25T15:01:37+00:00"
    assert kwabena["last_seen"].isoformat() == "2026-03-02T09:00:00+00:00"
    assert kwabena["name"] == "Kwabena A.-L."  # the latest call's name wins, whatever the order of arrival
    assert await pool.fetchval("select count(*) from contacts where lower(email) like 'k.ashworth%'") == 1


async def test_a_new_version_without_a_person_takes_their_call_away(pool, kit):
    meeting = kit.fathom_meeting()
    await store(pool, kit.raw_call(meeting))
    assert "priya.vandermeer.demo@gmail.com" in await contacts(pool)
    fewer = kit.fathom_meeting(
        calendar_invitees=[i for i in meeting["calendar_invitees"] if "gmail" not in (i["email"] or "")]
    )
    events = await store(pool, kit.raw_call(fewer, received_at=kit.later(60)))
    assert [e.change for e in events] == ["updated"]
    found = await contacts(pool)
    assert "priya.vandermeer.demo@gmail.com" not in found  # no stored call names her any more
    assert found["k.ashworth-lindqvist@tallowbrook-capital.com"]["call_count"] == 1


async def test_contacts_are_per_workspace(pool, kit):
    await store(pool, kit.raw_call(kit.fathom_meeting()), kit.raw_call(kit.fathom_meeting(), workspace_id="ws2"))
    assert set(await contacts(pool, "ws1")) == set(await contacts(pool, "ws2"))
    assert await pool.fetchval("select count(*) from contacts") == 2 * len(await contacts(pool, "ws1"))


async def test_concurrent_batches_naming_the_same_people_lose_no_call(pool, kit):
    """Four writers at once (replicas, or one replica's concurrent batches), every call naming the
    same two external people: each call is counted exactly once. A deadlock between writers is a
    transient error the consumer retries (here: retried the same way)."""
    import asyncio

    from callstream.normalizer._errors import is_transient

    raws = [
        kit.raw_call(kit.fathom_meeting(recording_id=n), external_id=str(n), received_at=kit.later(n))
        for n in range(1, 41)
    ]

    async def writer(part):
        for raw in part:
            for _ in range(20):
                try:
                    await store(pool, raw)
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    await asyncio.sleep(0.01)
            else:
                raise AssertionError("a batch kept failing")

    await asyncio.gather(*(writer(raws[i::4]) for i in range(4)))
    found = await contacts(pool)
    assert found["k.ashworth-lindqvist@tallowbrook-capital.com"]["call_count"] == 40
    assert found["priya.vandermeer.demo@gmail.com"]["call_count"] == 40
    assert await pool.fetchval("select count(*) from contact_messages") == 40 * 3


async def test_redelivery_through_jetstream_counts_each_call_once(pool, nc, kit, database_url, nats_url):
    """The consumer's path: the same raw event delivered again (a provider retry, a re-pull, a
    replay) leaves the contacts as they were."""
    from normalizer_itkit import publish_raw, settings_for

    from callstream.contracts import CALLS_RAW, NORMALIZER_CONSUMER
    from callstream.normalizer._consumer import RawCallProcessor

    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
    processor = RawCallProcessor(pool, js, settings_for(database_url, nats_url))
    data = kit.raw_call(kit.gong_bundle(0))
    for i in range(3):
        await publish_raw(js, data, kit.subject_of("gong"), msg_id=f"again-{i}")
        await processor.process(await sub.fetch(10, timeout=5))
    found = await contacts(pool)
    assert set(found) == {"teodor.vance@harborline-freight.example", "ines.halloway@harborline-freight.example"}
    assert {c["call_count"] for c in found.values()} == {1}
