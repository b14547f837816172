"""The parts of the hot path that need no servers: which query strings it takes, and that a fault
in it hands the request to the route instead of failing it."""

from __future__ import annotations

from typing import Any

import pytest

from callstream.linker._auth import Access
from callstream.linker._hot import HotLinks, link_identity
from callstream.runtime import RequestMetrics


@pytest.mark.parametrize(
    ("query", "identity"),
    [
        (b"workspace_id=acme&source=fathom&external_id=884120457", ("acme", "fathom", "884120457")),
        (b"external_id=1&source=gong&workspace_id=a_b-C", ("a_b-C", "gong", "1")),
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
    ],
)
def test_only_plain_valid_identities_are_taken(query: bytes, identity: tuple[str, str, str] | None) -> None:
    assert link_identity(query) == identity


class _Auth:
    def known(self, authorization: str) -> Access | None:
        return Access(workspaces=None)


class _BrokenLookup:
    def cached_record(self, *_: str) -> Any:
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
