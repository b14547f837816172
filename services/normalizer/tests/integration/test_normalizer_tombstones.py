"""Calls gone at the provider become tombstones (issue #19, 1c), on real PostgreSQL: a complete
listing that no longer names a stored call erases it, announces ``MessageDeleted`` through the
outbox and takes it out of its contacts and customer; private Gong calls, calls outside the window
and calls observed after the listing began are left alone; a newer version brings one back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec

from callstream.contracts import CallsListed, MessageDeleted, TimeWindow
from callstream.normalizer._mapped import METADATA_VERSION
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._store import store_batch
from callstream.normalizer._tombstones import apply_listing

FATHOM_WINDOW = TimeWindow(start=datetime(2026, 2, 20, tzinfo=UTC), end=datetime(2026, 2, 28, tzinfo=UTC))
GONG_WINDOW = TimeWindow(start=datetime(2026, 1, 14, tzinfo=UTC), end=datetime(2026, 1, 15, tzinfo=UTC))


async def store(pool, *raws):
    async with pool.acquire() as conn:
        return await store_batch(conn, [map_raw_call(raw) for raw in raws])


def listing(source, window, ids, listed_at=None):
    return CallsListed(
        run_id="run-1",
        integration_id=f"int-{source}",
        workspace_id="ws1",
        source=source,
        window=window,
        listed_at=listed_at or datetime.now(UTC) + timedelta(seconds=1),
        external_ids=list(ids),
    )


async def apply(pool, listed):
    async with pool.acquire() as conn:
        return await apply_listing(conn, listed)


async def message(pool, external_id):
    return await pool.fetchrow(
        "select id, title, content, message_metadata::text as metadata, ai_insights, customer_id, author_email,"
        " version, deleted_at, deleted_reason from messages where external_id = $1",
        external_id,
    )


async def deleted_events(pool):
    rows = await pool.fetch("select subject, payload from outbox where subject like 'messages.deleted.%' order by id")
    return [(r["subject"], msgspec.json.decode(r["payload"], type=MessageDeleted)) for r in rows]


async def test_a_call_no_longer_listed_becomes_a_tombstone(pool, kit):
    meeting = kit.fathom_meeting()
    rid = str(meeting["recording_id"])
    [created] = await store(pool, kit.raw_call(meeting))
    before = await message(pool, rid)
    assert before["customer_id"] is not None
    await pool.execute(
        """insert into data_points (workspace_id, message_id, data_point_key, data_point_category, text_value,
               evidence_quote, extractor_name, extractor_version, extractor_version_order, event_id, recorded_at)
           values ('ws1', $1, 'budget', 'deal', 'EUR 40k', 'a sentence of the transcript', 'x', '1', '{1}', 'e1', now())""",
        before["id"],
    )
    contacts_before = await pool.fetchval("select count(*) from contacts where workspace_id = 'ws1'")
    assert contacts_before > 0

    # listed, it stays; a listing of the window without it tombstones it
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [rid])) == []
    [event] = await apply(pool, listing("fathom", FATHOM_WINDOW, ["999"]))
    assert (event.message_id, event.external_id, event.reason, event.version) == (
        created.message_id,
        rid,
        "provider_deleted",
        2,
    )
    row = await message(pool, rid)
    assert row["deleted_reason"] == "provider_deleted"
    assert row["deleted_at"] is not None
    assert (row["title"], row["content"], row["metadata"], row["ai_insights"], row["customer_id"]) == (
        None,
        "",
        f'{{"metadata_version": {METADATA_VERSION}}}',  # of the current shape: rederive leaves it
        None,
        None,
    )
    assert row["author_email"] is None
    for table in ("message_participants", "data_points", "contact_messages"):
        assert await pool.fetchval(f"select count(*) from {table} where message_id = $1", row["id"]) == 0
    # its contacts named no other call: they are gone with it
    assert await pool.fetchval("select count(*) from contacts where workspace_id = 'ws1'") == 0
    assert [(s, e.message_id) for s, e in await deleted_events(pool)] == [("messages.deleted.fathom", event.message_id)]
    # nothing of what was said is left in the row
    text = json.dumps(
        [str(v) for v in dict(await pool.fetchrow("select * from messages where id = $1", row["id"])).values()]
    )
    assert "Priya" not in text
    assert "gmail.com" not in text

    # a second listing changes nothing more
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [])) == []
    # an older copy of the call (a redelivery, a replay) does not bring it back
    assert await store(pool, kit.raw_call(meeting, received_at=kit.T0 + timedelta(seconds=5))) == []
    assert (await message(pool, rid))["deleted_at"] is not None
    # the provider listing it again, observed after the tombstone, does
    [revived] = await store(pool, kit.raw_call(meeting, received_at=datetime.now(UTC) + timedelta(minutes=1)))
    assert (revived.change, revived.version) == ("updated", 3)
    row = await message(pool, rid)
    assert row["deleted_at"] is None
    assert row["deleted_reason"] is None
    assert row["content"]
    assert await pool.fetchval("select count(*) from contacts where workspace_id = 'ws1'") == contacts_before


async def test_private_calls_calls_outside_the_window_and_newer_observations_are_not_deleted(pool, kit):
    shared, private = kit.gong_bundle(0), kit.gong_bundle(1, transcript=False)
    private["call"]["metaData"]["isPrivate"] = True
    meeting = kit.fathom_meeting()
    await store(pool, kit.raw_call(shared), kit.raw_call(private), kit.raw_call(meeting))

    # both listed once; then the private call is hidden, not deleted, and the shared one is gone
    ids = [shared["call"]["metaData"]["id"], private["call"]["metaData"]["id"]]
    assert await apply(pool, listing("gong", GONG_WINDOW, ids)) == []
    # an empty listing judges nothing (the provider more likely stopped showing the calls)
    assert await apply(pool, listing("gong", GONG_WINDOW, [], listed_at=datetime.now(UTC) + timedelta(seconds=2))) == []
    assert (await message(pool, shared["call"]["metaData"]["id"]))["deleted_at"] is None
    still_listed = [private["call"]["metaData"]["id"]]
    [event] = await apply(
        pool, listing("gong", GONG_WINDOW, still_listed, listed_at=datetime.now(UTC) + timedelta(seconds=3))
    )
    assert event.external_id == shared["call"]["metaData"]["id"]
    assert (await message(pool, private["call"]["metaData"]["id"]))["deleted_at"] is None

    # a window that does not hold the meeting's created_at judges nothing
    assert await apply(pool, listing("fathom", TimeWindow(start=FATHOM_WINDOW.end, end=datetime.now(UTC)), [])) == []
    # nor one that starts exactly at it (the provider's filter may leave its ends out)
    on_start = TimeWindow(start=datetime(2026, 2, 25, 15, 54, 41, tzinfo=UTC), end=FATHOM_WINDOW.end)
    assert await apply(pool, listing("fathom", on_start, [])) == []
    # nor one whose end falls in the second it was created: the gateway asked the provider up to
    # that second only (whole seconds), so the listing could not have named it
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [str(meeting["recording_id"])])) == []
    on_end = TimeWindow(start=FATHOM_WINDOW.start, end=datetime(2026, 2, 25, 15, 54, 41, 500_000, tzinfo=UTC))
    assert await apply(pool, listing("fathom", on_end, [])) == []
    # nor does a listing that began before the meeting was last observed
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [], listed_at=kit.T0 - timedelta(days=1))) == []
    assert (await message(pool, str(meeting["recording_id"])))["deleted_at"] is None


async def test_a_listed_call_whose_recording_is_gone_becomes_a_tombstone(pool, kit):
    # Listed for the first time: the listing itself shows the call is this integration's, and the
    # 404 says it is gone.
    meeting = kit.fathom_meeting()
    rid = str(meeting["recording_id"])
    await store(pool, kit.raw_call(meeting))
    still_listed = msgspec.structs.replace(listing("fathom", FATHOM_WINDOW, [rid]), gone_external_ids=[rid])
    [event] = await apply(pool, still_listed)
    assert (event.external_id, event.reason) == (rid, "provider_deleted")
    assert (await message(pool, rid))["deleted_reason"] == "provider_deleted"


async def listed_at(pool, external_id):
    return await pool.fetchval("select last_listed_at from messages where external_id = $1", external_id)


async def test_only_a_call_listed_before_is_judged_by_a_listing_without_it(pool, kit):
    """A deletion is a window that no longer lists a call it listed before. A call the listing never
    named (a Fathom recording shared by someone outside the org arrives by webhook; the listing,
    without ``recorded_by[]``, does not return it) is alive, whatever a listing leaves out."""
    shared, ours = kit.fathom_meeting(recording_id=501), kit.fathom_meeting(recording_id=502)
    await store(pool, kit.raw_call(shared), kit.raw_call(ours))

    # the first complete listing names only ours: nothing is judged, ours is marked listed
    first = datetime.now(UTC) + timedelta(seconds=1)
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, ["502"], listed_at=first)) == []
    assert (await listed_at(pool, "501"), await listed_at(pool, "502")) == (None, first)
    # a later one again without the shared recording leaves it alone; ours, listed before and now
    # missing, is gone
    [event] = await apply(pool, listing("fathom", FATHOM_WINDOW, ["777"], listed_at=first + timedelta(seconds=1)))
    assert (event.external_id, event.reason) == ("502", "provider_deleted")
    assert (await message(pool, "501"))["deleted_at"] is None
    assert (await message(pool, "501"))["content"]
    assert [e.external_id for _, e in await deleted_events(pool)] == ["502"]


async def test_a_listed_call_observed_after_the_listing_began_is_not_judged(pool, kit):
    meeting = kit.fathom_meeting(recording_id=503)
    await store(pool, kit.raw_call(meeting))
    marked = datetime.now(UTC) + timedelta(seconds=1)
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, ["503"], listed_at=marked)) == []
    # a new version observed after the next listing began (the listing's view of it is older)
    renamed = kit.fathom_meeting(recording_id=503, title="Renamed")
    assert await store(pool, kit.raw_call(renamed, received_at=marked + timedelta(hours=1)))
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [], listed_at=marked + timedelta(seconds=1))) == []
    assert (await message(pool, "503"))["deleted_at"] is None
    # an older listing applied late (a redelivery) does not move the mark back
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, ["503"], listed_at=marked - timedelta(days=1))) == []
    assert await listed_at(pool, "503") == marked


async def test_a_call_another_integration_now_holds_was_not_listed_by_it(pool, kit):
    """Two Fathom integrations of one workspace share a call: the message belongs to the one that
    stored it last, and a mark set by the other's listing does not carry over to it."""
    meeting = kit.fathom_meeting(recording_id=504)
    await store(pool, kit.raw_call(meeting))
    marked = datetime.now(UTC) + timedelta(seconds=1)
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, ["504"], listed_at=marked)) == []
    assert await listed_at(pool, "504") == marked
    # the other integration's webhook (a shared external recording) stores a newer version
    other = msgspec.json.decode(kit.raw_call(meeting, received_at=marked + timedelta(hours=1)))
    other["integration_id"] = "int-other"
    other["payload"]["title"] = "Seen by the other org"
    assert await store(pool, msgspec.json.encode(other))
    row = await pool.fetchrow("select integration_id, last_listed_at from messages where external_id = '504'")
    assert (row["integration_id"], row["last_listed_at"]) == ("int-other", None)
    # its listing, which never named the call, judges nothing; nor does the first one's any more
    later = marked + timedelta(hours=2)
    other_listing = msgspec.structs.replace(
        listing("fathom", FATHOM_WINDOW, [], listed_at=later), integration_id="int-other"
    )
    assert await apply(pool, other_listing) == []
    assert await apply(pool, listing("fathom", FATHOM_WINDOW, [], listed_at=later)) == []
    assert (await message(pool, "504"))["deleted_at"] is None
