"""Links by provider identity and by id, tokens and workspace isolation."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

GONG_ID = "5520183947712650031"
GONG_URL = f"https://us-48213.app.gong.io/call?id={GONG_ID}"
SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_link_by_external_id_for_each_source(linker: Client, seed: Seed) -> None:
    token = await seed.token("acme")
    fathom_id = await seed.message(
        "acme", "fathom", "884120457", {"recording_url": SHARE, "url": "https://fathom.video/calls/884120457"}
    )
    gong_id = await seed.message("acme", "gong", GONG_ID, {"url": GONG_URL, "call_id": GONG_ID})

    r = await linker.get(
        "/v1/links",
        params={"workspace_id": "acme", "source": "fathom", "external_id": "884120457"},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "message_id": str(fathom_id),
        "source": "fathom",
        "external_id": "884120457",
        "url": SHARE,
        "kind": "recording",
        "origin": "metadata.recording_url",
        "reason": None,
    }
    r = await linker.get(
        "/v1/links", params={"workspace_id": "acme", "source": "gong", "external_id": GONG_ID}, headers=bearer(token)
    )
    assert r.json()["message_id"] == str(gong_id)
    assert (r.json()["url"], r.json()["origin"], r.json()["kind"]) == (GONG_URL, "metadata.url", "call")


async def test_gong_link_constructed_with_the_workspace_host(linker: Client, seed: Seed, admin_token: str) -> None:
    await seed.message("acme", "gong", GONG_ID, {"call_id": GONG_ID})
    await seed.message("other", "gong", GONG_ID, {"call_id": GONG_ID})
    await seed.gong_host("acme", "us-48213.app.gong.io")
    params = {"source": "gong", "external_id": GONG_ID}
    acme = (
        await linker.get("/v1/links", params={**params, "workspace_id": "acme"}, headers=bearer(admin_token))
    ).json()
    other = (
        await linker.get("/v1/links", params={**params, "workspace_id": "other"}, headers=bearer(admin_token))
    ).json()
    assert (acme["url"], acme["origin"]) == (GONG_URL, "constructed")
    assert (other["url"], other["origin"]) == (f"https://app.gong.io/call?id={GONG_ID}", "constructed")


async def test_unsafe_stored_link_is_never_served(linker: Client, seed: Seed, admin_token: str) -> None:
    await seed.message("acme", "fathom", "1", {"recording_url": "javascript:alert(1)", "url": SHARE})
    await seed.message("acme", "gong", "2", {"url": "https://us-1.app.gong.io.evil.example/call?id=2"})
    for source, ext, reason in (("fathom", "1", "not_https"), ("gong", "2", "host_not_allowed")):
        r = await linker.get(
            "/v1/links",
            params={"workspace_id": "acme", "source": source, "external_id": ext},
            headers=bearer(admin_token),
        )
        assert r.status_code == 200
        assert (r.json()["url"], r.json()["reason"]) == (None, reason)


async def test_tokens_are_required_and_checked(linker: Client, seed: Seed) -> None:
    await seed.message("acme", "fathom", "1", {"url": SHARE})
    revoked = await seed.token("acme", revoked=True)
    params = {"workspace_id": "acme", "source": "fathom", "external_id": "1"}
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        bearer("cs_unknown"),
        bearer(revoked),
        {"Authorization": "Bearer "},
    ):
        r = await linker.get("/v1/links", params=params, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_other_workspaces_are_404_exactly_like_unknown_ones(linker: Client, seed: Seed, admin_token: str) -> None:
    acme_token = await seed.token("acme")
    both_token = await seed.token("acme", "globex")
    secret_id = await seed.message("globex", "fathom", "42", {"url": SHARE})
    await seed.message("acme", "fathom", "7", {"url": SHARE})

    foreign = {"workspace_id": "globex", "source": "fathom", "external_id": "42"}
    unknown = {"workspace_id": "nosuch", "source": "fathom", "external_id": "42"}
    missing = {"workspace_id": "acme", "source": "fathom", "external_id": "42"}
    answers = [await linker.get("/v1/links", params=p, headers=bearer(acme_token)) for p in (foreign, unknown, missing)]
    assert {r.status_code for r in answers} == {404}
    assert len({r.content for r in answers}) == 1, "a foreign workspace must look exactly like an unknown one"

    for path in (f"/v1/messages/{secret_id}", f"/v1/messages/{secret_id}/link?t=5", f"/v1/messages/{uuid.uuid4()}"):
        r = await linker.get(path, headers=bearer(acme_token))
        assert r.status_code == 404, path
        assert r.json() == {"error": "not_found", "detail": "no such message"}
    r = await linker.get("/v1/messages", params={"workspace_id": "globex"}, headers=bearer(acme_token))
    assert r.status_code == 404

    r = await linker.post("/v1/links/resolve", json={"message_ids": [str(secret_id)]}, headers=bearer(acme_token))
    assert r.json() == {"links": {str(secret_id): None}}

    # A token for both, and the admin token, do see it.
    for token in (both_token, admin_token):
        r = await linker.get("/v1/links", params=foreign, headers=bearer(token))
        assert r.json()["message_id"] == str(secret_id)
        assert (await linker.get(f"/v1/messages/{secret_id}", headers=bearer(token))).status_code == 200


async def test_resolve_many(linker: Client, seed: Seed) -> None:
    token = await seed.token("acme")
    ids = [await seed.message("acme", "fathom", str(i), {"recording_url": f"{SHARE}{i}"}) for i in range(5)]
    foreign = await seed.message("globex", "fathom", "9", {"recording_url": SHARE})
    asked = [str(i) for i in ids] + [str(foreign), str(uuid.uuid4()), "not-a-uuid", str(ids[0]).upper()]
    r = await linker.post("/v1/links/resolve", json={"message_ids": asked}, headers=bearer(token))
    assert r.status_code == 200, r.text
    links = r.json()["links"]
    assert set(links) == set(asked)
    for n, i in enumerate(ids):
        assert links[str(i)]["url"] == f"{SHARE}{n}"
    assert links[str(ids[0]).upper()]["message_id"] == str(ids[0])
    assert links[str(foreign)] is None
    assert links["not-a-uuid"] is None

    # Second call: served from the cache, same answer.
    again = await linker.post("/v1/links/resolve", json={"message_ids": asked}, headers=bearer(token))
    assert again.json() == r.json()


async def test_resolve_rejects_more_than_1000_ids(linker: Client, admin_token: str) -> None:
    ids = [str(uuid.uuid4()) for _ in range(1001)]
    r = await linker.post("/v1/links/resolve", json={"message_ids": ids}, headers=bearer(admin_token))
    assert r.status_code == 400
    assert set(r.json()) == {"error", "detail"}
    r = await linker.post("/v1/links/resolve", json={"ids": []}, headers=bearer(admin_token))
    assert r.status_code == 400


async def test_moment_links(linker: Client, seed: Seed, admin_token: str) -> None:
    fathom_id = await seed.message(
        "acme", "fathom", "884120457", {"recording_url": SHARE, "url": "https://fathom.video/calls/884120457"}
    )
    gong_id = await seed.message("acme", "gong", GONG_ID, {"url": GONG_URL})
    r = await linker.get(f"/v1/messages/{fathom_id}/link", params={"t": 645}, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert (r.json()["url"], r.json()["moment"], r.json()["t"]) == (
        SHARE + "?timestamp=645",  # shared/providers/fathom.md, addendum: never #t=
        True,
        645,
    )
    r = await linker.get(f"/v1/messages/{gong_id}/link", params={"t": 30}, headers=bearer(admin_token))
    assert (r.json()["url"], r.json()["moment"], r.json()["reason"]) == (GONG_URL, False, "moment_unverified")
    r = await linker.get(f"/v1/messages/{gong_id}/link", params={"t": -1}, headers=bearer(admin_token))
    assert r.status_code == 400


async def test_etag_and_cache_control(linker: Client, seed: Seed, admin_token: str) -> None:
    await seed.message("acme", "fathom", "1", {"recording_url": SHARE})
    params = {"workspace_id": "acme", "source": "fathom", "external_id": "1"}
    r = await linker.get("/v1/links", params=params, headers=bearer(admin_token))
    etag = r.headers["etag"]
    assert etag.startswith('W/"')
    assert "no-cache" in r.headers["cache-control"]
    assert "private" in r.headers["cache-control"]
    same = await linker.get("/v1/links", params=params, headers={**bearer(admin_token), "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    other = await linker.get("/v1/links", params=params, headers={**bearer(admin_token), "If-None-Match": 'W/"x"'})
    assert other.status_code == 200
    assert other.json()["url"] == SHARE
