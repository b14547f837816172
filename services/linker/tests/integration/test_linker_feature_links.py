"""``PUT``/``DELETE /v1/features/{feature_id}/messages/...``: published to JetStream (the linker
writes no row), answered 202 after the ack, one event per request however often it is retried."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import nats
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import FEATURES, FeatureLinked, FeatureUnlinked

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _events(nats_url: str) -> list[Any]:
    """Every message of the FEATURES stream, in order (on a connection of the test's own)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(FEATURES)
        first, last = info.state.first_seq, info.state.last_seq
        return [await js.get_msg(FEATURES, seq) for seq in range(first, last + 1)] if info.state.messages else []
    finally:
        await nc.close()


async def test_put_and_delete_publish_once_per_request(
    linker: Client, seed: Seed, admin_token: str, nats_url: str
) -> None:
    mid = await seed.message("acme", "gong", "5520183947712650031")
    path = f"/v1/features/sso/messages/{mid}"
    put = await linker.put(path, json={"feature_name": "Single sign-on"}, headers=bearer(admin_token))
    assert put.status_code == 202, put.text
    body = put.json()
    assert body == {
        "workspace_id": "acme",
        "feature_id": "sso",
        "message_id": str(mid),
        "source": "gong",
        "external_id": "5520183947712650031",
        "change": "linked",
        "event_id": body["event_id"],
        "duplicate": False,
    }
    retried = await linker.put(path, json={"feature_name": "Single sign-on"}, headers=bearer(admin_token))
    assert retried.json() == {**body, "duplicate": True}

    [event] = await _events(nats_url)
    assert event.subject == "features.linked"
    assert event.headers["Nats-Msg-Id"] == body["event_id"]
    assert event.headers["traceparent"]
    linked = msgspec.json.decode(event.data, type=FeatureLinked)
    assert (linked.workspace_id, linked.feature_id, linked.feature_name) == ("acme", "sso", "Single sign-on")
    assert (linked.message.message_id, linked.message.source, linked.message.external_id) == (
        str(mid),
        "gong",
        "5520183947712650031",
    )

    # No body is a link without a name; the same state, another request: its own event.
    bare = await linker.put(path, headers=bearer(admin_token))
    assert (bare.status_code, bare.json()["duplicate"]) == (202, False)

    gone = await linker.delete(path, headers=bearer(admin_token))
    assert gone.status_code == 202, gone.text
    assert (gone.json()["change"], gone.json()["duplicate"]) == ("unlinked", False)
    assert (await linker.delete(path, headers=bearer(admin_token))).json()["duplicate"] is True
    events = await _events(nats_url)
    assert [e.subject for e in events] == ["features.linked", "features.linked", "features.unlinked"]
    unlinked = msgspec.json.decode(events[-1].data, type=FeatureUnlinked)
    assert (unlinked.feature_id, unlinked.message.message_id) == ("sso", str(mid))

    # The linker wrote nothing: the normalizer stores links.
    assert await seed.conn.fetchval("select count(*) from message_features") == 0


async def test_a_new_state_is_a_new_event_and_an_idempotency_key_is_one(
    linker: Client, seed: Seed, admin_token: str
) -> None:
    """Linked, unlinked, linked again (as the normalizer stores them) are three events, not a
    duplicate of the first; a client's Idempotency-Key makes one request one event whatever the state."""
    mid = await seed.message("acme", "fathom", "884120457")
    path = f"/v1/features/f1/messages/{mid}"
    first = (await linker.put(path, headers=bearer(admin_token))).json()
    # The normalizer stores it (as its SQL does: the row, then an unlink deletes it and moves the feature).
    await seed.conn.execute("insert into features (workspace_id, id) values ('acme', 'f1')")
    await seed.conn.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id, message_id)"
        " values ('acme', 'f1', 'fathom', '884120457', $1)",
        mid,
    )
    unlink = (await linker.delete(path, headers=bearer(admin_token))).json()
    await seed.conn.execute("delete from message_features")
    await seed.conn.execute("update features set updated_at = clock_timestamp()")
    again = (await linker.put(path, headers=bearer(admin_token))).json()
    assert len({first["event_id"], unlink["event_id"], again["event_id"]}) == 3
    assert not any(a["duplicate"] for a in (first, unlink, again))

    keyed = {**bearer(admin_token), "Idempotency-Key": "req-7"}
    one = (await linker.put(path, headers=keyed)).json()
    await seed.conn.execute("update features set updated_at = clock_timestamp()")
    two = (await linker.put(path, headers=keyed)).json()
    assert (one["duplicate"], two["duplicate"], one["event_id"]) == (False, True, two["event_id"])
    long_key = await linker.put(path, headers={**bearer(admin_token), "Idempotency-Key": "k" * 201})
    assert (long_key.status_code, long_key.json()["error"]) == (400, "invalid_idempotency_key")


async def test_by_provider_identity(linker: Client, seed: Seed, admin_token: str, nats_url: str) -> None:
    mid = await seed.message("acme", "gong", "5520183947712650031")
    path = "/v1/features/sso/messages/by-external/gong/5520183947712650031"
    r = await linker.put(path, params={"workspace_id": "acme"}, headers=bearer(admin_token))
    assert r.status_code == 202, r.text
    assert (r.json()["message_id"], r.json()["change"]) == (str(mid), "linked")
    r = await linker.delete(path, params={"workspace_id": "acme"}, headers=bearer(admin_token))
    assert (r.status_code, r.json()["change"]) == (202, "unlinked")
    # Another workspace, an unknown call, a source that is not one, no workspace.
    assert (await linker.put(path, params={"workspace_id": "globex"}, headers=bearer(admin_token))).status_code == 404
    unknown = path.replace("5520183947712650031", "1")
    assert (await linker.put(unknown, params={"workspace_id": "acme"}, headers=bearer(admin_token))).status_code == 404
    bad_source = path.replace("/gong/", "/zoom/")
    assert (
        await linker.put(bad_source, params={"workspace_id": "acme"}, headers=bearer(admin_token))
    ).status_code == 400
    assert (await linker.put(path, headers=bearer(admin_token))).status_code == 400
    assert len(await _events(nats_url)) == 2


async def test_who_may_change_links(linker: Client, seed: Seed, admin_token: str, nats_url: str) -> None:
    mid = await seed.message("acme", "fathom", "1")
    path = f"/v1/features/f1/messages/{mid}"
    reader = await seed.token("acme")
    stranger = await seed.token("globex")
    assert (await linker.put(path)).status_code == 401
    assert (await linker.put(path, headers=bearer("cs_unknown"))).status_code == 401
    # Its own workspace: refused (tokens carry no manage scope yet); another's: as if it did not exist.
    own = await linker.put(path, headers=bearer(reader))
    assert (own.status_code, own.json()["error"]) == (403, "forbidden")
    foreign = await linker.put(path, headers=bearer(stranger))
    unknown = await linker.put(f"/v1/features/f1/messages/{uuid.uuid4()}", headers=bearer(stranger))
    not_an_id = await linker.delete("/v1/features/f1/messages/not-a-uuid", headers=bearer(admin_token))
    assert foreign.status_code == unknown.status_code == not_an_id.status_code == 404
    assert foreign.json() == unknown.json()
    # A workspace named in the query must be the message's.
    other = await linker.put(path, params={"workspace_id": "globex"}, headers=bearer(admin_token))
    assert other.status_code == 404
    too_long = await linker.put(f"/v1/features/{'x' * 257}/messages/{mid}", headers=bearer(admin_token))
    assert too_long.status_code == 400
    unknown_field = await linker.put(path, json={"name": "x"}, headers=bearer(admin_token))
    assert unknown_field.status_code == 400
    assert await _events(nats_url) == []


async def test_503_with_retry_after_when_the_broker_cannot_confirm(
    linker: Client, seed: Seed, admin_token: str, nats_url: str
) -> None:
    """No stream takes the subject (a broker that cannot store it): nothing was accepted, the
    client is told to retry."""
    mid = await seed.message("acme", "fathom", "1")
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(FEATURES)
    finally:
        await nc.close()
    r = await linker.put(f"/v1/features/f1/messages/{mid}", headers=bearer(admin_token))
    assert (r.status_code, r.json()["error"]) == (503, "broker_unavailable")
    assert int(r.headers["retry-after"]) > 0
