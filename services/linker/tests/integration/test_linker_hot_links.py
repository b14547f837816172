"""Cache hits of GET /v1/links are answered in front of litestar (``_hot.py``): byte for byte what
the route sends, and only when the cache alone can answer; everything else is the route's. Both
forms: the ASGI wrapper, and the RSGI first answer granian calls (on a stand-in for its protocol
object here; ``test_linker_served.py`` asks a real granian)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import LinkSources, MessageUpserted, messages_upserted_subject
from callstream.linker import Settings, build_app

Client = AsyncTestClient[Litestar]
Seed = Any
WaitLive = Callable[[Client], Awaitable[None]]
SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
GONG_ID = "5520183947712650031"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() != "x-request-id")
    return response.status_code, response.content, headers


@asynccontextmanager
async def _app(monkeypatch: pytest.MonkeyPatch, cache_entries: int) -> AsyncIterator[Client]:
    with monkeypatch.context() as env:
        env.setenv("CALLSTREAM_LINKER_CACHE_ENTRIES", str(cache_entries))
        env.setenv("CALLSTREAM_LINKER_TOKEN_CACHE_SECONDS", "60")
        app = build_app(Settings())  # type: ignore[call-arg]
    async with AsyncTestClient(app) as client:
        yield client


class RsgiHeaders:
    """granian's RSGI headers: lower-case names, the first value by ``get``, all by ``get_all``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def __contains__(self, name: str) -> bool:
        return any(k == name for k, _ in self._pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._pairs if k == name), default)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]


@dataclass
class RsgiScope:
    query_string: str
    headers: RsgiHeaders
    path: str = "/v1/links"
    method: str = "GET"


class RsgiProtocol:
    def __init__(self) -> None:
        self.answers: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.answers.append((status, headers, b""))


def _rsgi(client: Client, query: str, headers: list[tuple[str, str]], **scope: str) -> RsgiProtocol | None:
    """The RSGI first answer for a request; ``None`` when it declines (and then it sent nothing)."""
    protocol = RsgiProtocol()
    answered = client.app.state.hot_links.answer_rsgi(RsgiScope(query, RsgiHeaders(headers), **scope), protocol)
    assert len(protocol.answers) == int(answered)
    return protocol if answered else None


def _rsgi_comparable(protocol: RsgiProtocol) -> tuple[int, bytes, list[tuple[str, str]]]:
    """As :func:`_comparable`, with the content-length granian adds to a body it is given."""
    ((status, headers, body),) = protocol.answers
    sent = [(k, v) for k, v in headers if k != "x-request-id"]
    if status != 304:
        sent.append(("content-length", str(len(body))))
    return status, body, sorted(sent)


def _answered(client: Client) -> int:
    return int(client.app.state.hot_links.answered)


async def test_cached_links_are_answered_with_the_routes_exact_bytes_and_headers(
    linker_env: None,
    jetstream: object,
    monkeypatch: pytest.MonkeyPatch,
    seed: Seed,
    admin_token: str,
    wait_feed_live: WaitLive,
) -> None:
    token = await seed.token("acme")
    await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    await seed.message("acme", "fathom", "2", {"recording_url": "javascript:alert(1)"})  # unsafe: url null
    await seed.message("acme", "gong", GONG_ID, {"call_id": GONG_ID})  # constructed from the workspace host
    await seed.gong_host("acme", "us-48213.app.gong.io")
    cases = [("fathom", "884120457"), ("fathom", "2"), ("gong", GONG_ID)]

    async with _app(monkeypatch, 1000) as hot, _app(monkeypatch, 0) as plain:
        await wait_feed_live(hot)
        for caller in (token, admin_token):
            for source, external_id in cases:
                params = {"workspace_id": "acme", "source": source, "external_id": external_id}
                first = await hot.get("/v1/links", params=params, headers=bearer(caller))  # fills the cache
                before = _answered(hot)
                cached = await hot.get("/v1/links", params=params, headers=bearer(caller))
                assert _answered(hot) == before + 1, (caller == admin_token, source, external_id)
                route = await plain.get("/v1/links", params=params, headers=bearer(caller))
                assert _answered(plain) == 0
                assert route.status_code == 200
                assert _comparable(cached) == _comparable(route) == _comparable(first)
                assert cached.headers["x-request-id"]

                etag = route.headers["etag"]
                for if_none_match in (etag, f'W/"other", {etag}', "*"):
                    conditional = {**bearer(caller), "If-None-Match": if_none_match}
                    hot_304 = await hot.get("/v1/links", params=params, headers=conditional)
                    route_304 = await plain.get("/v1/links", params=params, headers=conditional)
                    assert hot_304.status_code == 304
                    assert _comparable(hot_304) == _comparable(route_304)
        assert route.json()["url"] == f"https://us-48213.app.gong.io/call?id={GONG_ID}"  # the last case

        # A request id the caller sends is echoed, as the runtime's middleware does on the route.
        params = {"workspace_id": "acme", "source": "fathom", "external_id": "884120457"}
        echoed = await hot.get("/v1/links", params=params, headers={**bearer(token), "x-request-id": "req-77"})
        assert echoed.headers["x-request-id"] == "req-77"

        # Answers in front of the route are counted under the route's own series.
        async def served() -> float:
            series = ('route="/v1/links"', 'status="200"', 'service="linker"')
            for line in (await hot.get("/metrics")).text.splitlines():
                if line.startswith("callstream_http_requests_total{") and all(s in line for s in series):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        counted, before = await served(), _answered(hot)
        await hot.get("/v1/links", params=params, headers=bearer(token))
        assert _answered(hot) == before + 1
        assert await served() == counted + 1


async def test_what_the_cache_cannot_answer_is_left_to_the_route(
    linker_env: None,
    jetstream: object,
    monkeypatch: pytest.MonkeyPatch,
    seed: Seed,
    admin_token: str,
    wait_feed_live: WaitLive,
) -> None:
    token = await seed.token("acme")
    other = await seed.token("globex")
    revoked = await seed.token("acme", revoked=True)
    await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    await seed.message("globex", "fathom", "5", {"recording_url": SHARE})
    good = "workspace_id=acme&source=fathom&external_id=884120457"

    async with _app(monkeypatch, 1000) as hot:
        await wait_feed_live(hot)
        for caller in (token, other, revoked):  # every token looked up once, so its answer is cached
            await hot.get(f"/v1/links?{good}", headers=bearer(caller))
        await hot.get("/v1/links?workspace_id=globex&source=fathom&external_id=5", headers=bearer(admin_token))
        assert (await hot.get(f"/v1/links?{good}", headers=bearer(token))).status_code == 200

        cases: list[tuple[str, dict[str, str], int]] = [
            (good, {}, 401),  # no token
            (good, {"Authorization": "Basic abc"}, 401),
            (good, bearer("cs_unknown_token"), 401),
            (good, bearer(revoked), 401),
            (good, bearer(other), 404),  # a workspace the token does not cover
            ("workspace_id=globex&source=fathom&external_id=5", bearer(token), 404),  # cached, but not theirs
            ("workspace_id=acme&source=fathom&external_id=404", bearer(token), 404),  # not in the cache
            ("workspace_id=ac%20me&source=fathom&external_id=884120457", bearer(token), 400),
            ("workspace_id=acme&source=zoom&external_id=884120457", bearer(token), 400),
            ("workspace_id=acme&source=fathom&external_id=", bearer(token), 400),
            (f"workspace_id=acme&source=fathom&external_id={'9' * 257}", bearer(token), 400),
            ("workspace_id=acme&source=fathom", bearer(token), 400),
            # Unusual spellings of a cached link: the route decides, and finds it.
            ("workspace_id=acme&source=fathom&external_id=88412045%37", bearer(token), 200),
            (f"{good}&workspace_id=acme", bearer(token), 200),
            (f"{good}&fields=url", bearer(token), 200),
            (good, bearer(token) | {"Host": "linker.example/x"}, 400),  # the router refuses a malformed Host
        ]
        before = _answered(hot)
        for query, headers, status in cases:
            response = await hot.get(f"/v1/links?{query}", headers=headers)
            assert response.status_code == status, (query, headers, response.text)
            if status >= 400:
                assert response.json()["error"], query
        assert _answered(hot) == before
        two_tokens = [("authorization", f"Bearer {token}"), ("authorization", f"Bearer {other}")]
        response = await hot.get(f"/v1/links?{good}", headers=httpx.Headers(two_tokens))
        assert _answered(hot) == before
        assert response.status_code in (200, 401, 404)
        assert (await hot.head(f"/v1/links?{good}", headers=bearer(token))).status_code in (200, 405)
        assert _answered(hot) == before
        assert (await hot.get(f"/v1/links?{good}", headers=bearer(token))).status_code == 200
        assert _answered(hot) == before + 1


async def test_an_event_carrying_link_sources_is_served_from_memory_with_the_rows_answer(
    linker_env: None,
    jetstream: Any,
    monkeypatch: pytest.MonkeyPatch,
    seed: Seed,
    admin_token: str,
    wait_feed_live: WaitLive,
) -> None:
    fathom_id = await seed.message("acme", "fathom", "7", {"recording_url": SHARE, "url": "https://fathom.video/x"})
    unsafe_id = await seed.message("acme", "fathom", "8", {"recording_url": "http://fathom.video/plain"})
    gong_id = await seed.message("acme", "gong", GONG_ID, {"call_id": GONG_ID, "url": "https://evil.example/x"})
    bare_id = await seed.message("acme", "fathom", "9", {"recording_url": SHARE})
    events = [
        MessageUpserted(
            message_id=str(fathom_id),
            workspace_id="acme",
            source="fathom",
            external_id="7",
            change="created",
            version=1,
            link_sources=LinkSources(recording_url=SHARE, url="https://fathom.video/x"),
        ),
        MessageUpserted(
            message_id=str(unsafe_id),
            workspace_id="acme",
            source="fathom",
            external_id="8",
            change="created",
            version=1,
            link_sources=LinkSources(recording_url="http://fathom.video/plain"),
        ),
        MessageUpserted(
            message_id=str(gong_id),
            workspace_id="acme",
            source="gong",
            external_id=GONG_ID,
            change="created",
            version=1,
            link_sources=LinkSources(call_id=GONG_ID, url="https://evil.example/x"),
        ),
        # From a producer that sends no sources: the cache only forgets, the route reads the row.
        MessageUpserted(
            message_id=str(bare_id), workspace_id="acme", source="fathom", external_id="9", change="created", version=1
        ),
    ]
    async with _app(monkeypatch, 1000) as hot, _app(monkeypatch, 0) as plain:
        await wait_feed_live(hot)
        cache = hot.app.state.link_cache
        for event in events:
            await jetstream.publish(messages_upserted_subject(event.source), msgspec.json.encode(event))
        deadline = time.monotonic() + 5
        while any(cache.announced_version(e.message_id) != 1 for e in events):
            assert time.monotonic() < deadline, "the events never reached the cache"
            await asyncio.sleep(0.02)
        assert len(cache) == 3  # the three that carried their sources

        for event, from_memory in zip(events, (True, True, True, False), strict=True):
            params = {"workspace_id": "acme", "source": event.source, "external_id": event.external_id}
            before = _answered(hot)
            served = await hot.get("/v1/links", params=params, headers=bearer(admin_token))
            route = await plain.get("/v1/links", params=params, headers=bearer(admin_token))
            assert _answered(hot) == before + int(from_memory), event.external_id
            assert _comparable(served) == _comparable(route), event.external_id
        assert [
            (await plain.get("/v1/links", params=p, headers=bearer(admin_token))).json()["reason"]
            for p in (
                {"workspace_id": "acme", "source": "fathom", "external_id": "8"},
                {"workspace_id": "acme", "source": "gong", "external_id": GONG_ID},
            )
        ] == ["not_https", "host_not_allowed"]  # unsafe answers are compared too


async def test_the_rsgi_first_answer_is_the_routes_answer_and_declines_the_rest(
    linker_env: None,
    jetstream: object,
    monkeypatch: pytest.MonkeyPatch,
    seed: Seed,
    admin_token: str,
    wait_feed_live: WaitLive,
) -> None:
    token = await seed.token("acme")
    other = await seed.token("globex")
    await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    await seed.message("acme", "fathom", "2", {"recording_url": "javascript:alert(1)"})
    await seed.message("acme", "gong", GONG_ID, {"call_id": GONG_ID})
    await seed.gong_host("acme", "us-48213.app.gong.io")

    async with _app(monkeypatch, 1000) as hot, _app(monkeypatch, 0) as plain:
        await wait_feed_live(hot)
        for caller in (token, admin_token):
            for source, external_id in (("fathom", "884120457"), ("fathom", "2"), ("gong", GONG_ID)):
                query = f"workspace_id=acme&source={source}&external_id={external_id}"
                await hot.get(f"/v1/links?{query}", headers=bearer(caller))  # fills the cache
                before = _answered(hot)
                answer = _rsgi(hot, query, [("authorization", f"Bearer {caller}"), ("x-request-id", "r-1")])
                assert answer is not None, (source, external_id)
                assert _answered(hot) == before + 1
                route = await plain.get(f"/v1/links?{query}", headers=bearer(caller))
                assert _rsgi_comparable(answer) == _comparable(route)
                assert ("x-request-id", "r-1") in answer.answers[0][1]
                etag = route.headers["etag"]
                for if_none_match in (etag, f'W/"other", {etag}', "*"):
                    asked = [("authorization", f"Bearer {caller}"), ("if-none-match", if_none_match)]
                    answer_304 = _rsgi(hot, query, asked)
                    route_304 = await plain.get(f"/v1/links?{query}", headers=dict(asked))
                    assert answer_304 is not None
                    assert route_304.status_code == 304
                    assert _rsgi_comparable(answer_304) == _comparable(route_304)

        good = "workspace_id=acme&source=fathom&external_id=884120457"
        await hot.get(f"/v1/links?{good}", headers=bearer(other))  # the token is known now
        auth = [("authorization", f"Bearer {token}")]
        declined: list[tuple[str, list[tuple[str, str]], dict[str, str]]] = [
            (good, [], {}),
            (good, [("authorization", "Bearer cs_unknown_token")], {}),
            (good, [("authorization", f"Bearer {other}")], {}),  # a workspace the token does not cover
            (good, [*auth, ("authorization", f"Bearer {other}")], {}),  # two tokens
            (good, [*auth, ("host", "linker.example/x")], {}),  # the router refuses a malformed Host
            (good, auth, {"method": "HEAD"}),
            (good, auth, {"path": "/v1/links/resolve"}),
            ("workspace_id=acme&source=fathom&external_id=404", auth, {}),  # not in the cache
            ("workspace_id=acme&source=fathom&external_id=88412045%37", auth, {}),
            ("workspace_id=acme&source=zoom&external_id=884120457", auth, {}),
        ]
        before = _answered(hot)
        for query, headers, scope in declined:
            assert _rsgi(hot, query, headers, **scope) is None, (query, headers, scope)
        assert _answered(hot) == before
        assert _rsgi(hot, good, [*auth, ("host", "linker.example:8080")]) is not None

        # The request id follows runtime.request_id's rules with repeated headers too: the first
        # non-empty x-request-id, else the last traceparent.
        first, last = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
        traced = [
            *auth,
            ("traceparent", f"00-{first}-b7ad6b7169203331-01"),
            ("traceparent", f"00-{last}-00f067aa0ba902b7-01"),
        ]
        answer = _rsgi(hot, good, [*traced, ("x-request-id", ""), ("x-request-id", "second")])
        assert answer is not None
        assert ("x-request-id", "second") in answer.answers[0][1]
        answer = _rsgi(hot, good, traced)
        assert answer is not None
        assert ("x-request-id", last) in answer.answers[0][1]
