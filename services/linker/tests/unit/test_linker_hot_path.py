"""The parts of the hot path that need no servers: which query strings it takes, that a fault in
it hands the request to the route instead of failing it, and that its rendered answers follow the
cache."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from callstream.contracts import MessageUpserted
from callstream.linker._auth import Access
from callstream.linker._cache import FeedState, LinkCache
from callstream.linker._etag import etag_of
from callstream.linker._hot import HotLinks, link_identity
from callstream.linker._links import DEFAULT_LINK_HOSTS, HostAllowList, LinkFacts
from callstream.linker._lookup import LinkLookup
from callstream.runtime import RequestMetrics


@pytest.mark.parametrize(
    ("query", "identity"),
    [
        (b"workspace_id=acme&source=fathom&external_id=884120457", ("acme", "fathom", "884120457")),
        (b"external_id=1&source=gong&workspace_id=a_b-C", ("a_b-C", "gong", "1")),
        (b"source=gong&workspace_id=acme&external_id=1", ("acme", "gong", "1")),
        (b"workspace_id=acme&source=gong&external_id=a=b", ("acme", "gong", "a=b")),  # as parse_qs reads it
        (b"workspace_id=acme&source=gong&external_id=1&", None),
        (b"workspace_id=acme&source=gong&external_id=1&external_id=2", None),
        (b"workspace_id=acme&source=fathom&external_id=88%34", None),  # escapes: the route decodes
        (b"workspace_id=acme&source=fathom&external_id=a+b", None),
        (b"workspace_id=acme&source=fathom", None),
        (b"workspace_id=acme&source=fathom&external_id=1&fields=url", None),
        (b"workspace_id=acme&workspace_id=acme&source=fathom&external_id=1", None),
        (b"workspace_id=acme&source=fathom&external_id", None),
        (b"workspace_id=acme&source=fathom&external_id=", None),
        (b"workspace_id=acme&source=zoom&external_id=1", None),
        (b"workspace_id=ac.me&source=fathom&external_id=1", None),
        (b"workspace_id=" + b"a" * 65 + b"&source=fathom&external_id=1", None),
        (b"workspace_id=acme&source=fathom&external_id=" + b"9" * 257, None),
        ("workspace_id=acme&source=fathom&external_id=é".encode(), None),
        ("source=fathom&workspace_id=acme&external_id=é".encode(), None),
        (b"workspace_id=acme&source=gong&external_id=" + b"9" * 256, ("acme", "gong", "9" * 256)),
        (b"source=gong&workspace_id=acme&external_id=" + b"9" * 257, None),
        (b"workspace_id=acme&source=Gong&external_id=1", None),
        (b"workspace_id=ac%6De&source=gong&external_id=1", None),
        (b"workspace_id=acme&source=gong&external_id=a'(*),-.~!$;:@/?", ("acme", "gong", "a'(*),-.~!$;:@/?")),
    ],
)
def test_only_plain_valid_identities_are_taken(query: bytes, identity: tuple[str, str, str] | None) -> None:
    assert link_identity(query.decode("latin-1")) == identity


class _Auth:
    def known(self, authorization: str) -> Access | None:
        return Access(workspaces=None)


class _BrokenLookup:
    def cached_answer(self, _: tuple[str, str, str]) -> Any:
        raise RuntimeError("a bug in the cache")


async def test_a_fault_in_the_hot_path_sends_the_request_to_the_route() -> None:
    routed: list[str] = []
    sent: list[Any] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    hot = HotLinks(route, _BrokenLookup(), _Auth(), RequestMetrics("linker-unit"))  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/links",
        "query_string": b"workspace_id=acme&source=fathom&external_id=1",
        "headers": [(b"authorization", b"Bearer x")],
    }
    await hot(scope, receive, send)
    assert routed == ["/v1/links"]
    assert sent == []
    assert hot.answered == 0


class _Headers:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get_all(self, name: str) -> list[str]:
        return [self._values[name]] if name in self._values else []

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._values


class _Protocol:
    def __init__(self) -> None:
        self.answers: list[Any] = []

    def response_bytes(self, *answer: Any) -> None:
        self.answers.append(answer)

    def response_empty(self, *answer: Any) -> None:
        self.answers.append(answer)


def test_a_fault_in_the_rsgi_answer_declines_the_request() -> None:
    """Over RSGI the same fault sends nothing and declines, so the ASGI app behind answers."""
    hot = HotLinks(None, _BrokenLookup(), _Auth(), RequestMetrics("linker-unit"))  # type: ignore[arg-type]
    scope = SimpleNamespace(
        path="/v1/links",
        method="GET",
        query_string="workspace_id=acme&source=fathom&external_id=1",
        headers=_Headers({"authorization": "Bearer x"}),
    )
    protocol = _Protocol()
    assert hot.answer_rsgi(scope, protocol) is False
    assert protocol.answers == []
    assert hot.answered == 0


def _fathom_facts(version: int, url: str) -> LinkFacts:
    return LinkFacts(
        message_id="m1", workspace_id="w", source="fathom", external_id="1", version=version, recording_url=url
    )


async def test_the_rendered_answer_is_made_once_per_entry_and_follows_it() -> None:
    live = FeedState(live=True, generation=1)
    cache = LinkCache(10, 60.0, lambda: live)
    lookup = LinkLookup(lambda: None, cache, HostAllowList(DEFAULT_LINK_HOSTS))  # type: ignore[arg-type,return-value]
    first = _fathom_facts(1, "https://fathom.video/share/first")
    cache.store(first, cache.epoch)

    rendered = lookup.cached_answer(("w", "fathom", "1"))
    assert rendered is not None
    assert msgspec.json.decode(rendered.body)["url"] == "https://fathom.video/share/first"
    assert rendered.body == msgspec.json.encode(rendered.record)
    assert rendered.etag == etag_of(rendered.body)
    assert lookup.cached_answer(("w", "fathom", "1")) is rendered  # encoded and hashed once
    assert await lookup.record(first) is rendered.record  # the route's record is the same one

    cache.invalidate(
        MessageUpserted(
            message_id="m1", workspace_id="w", source="fathom", external_id="1", change="updated", version=2
        )
    )
    assert lookup.cached_answer(("w", "fathom", "1")) is None
    cache.store(_fathom_facts(2, "https://fathom.video/share/second"), cache.epoch)
    changed = lookup.cached_answer(("w", "fathom", "1"))
    assert changed is not None
    assert msgspec.json.decode(changed.body)["url"] == "https://fathom.video/share/second"
    assert changed.etag != rendered.etag
