"""``ETag`` on every successful ``GET`` under ``/v1/`` (and the seed's ``/features/``), and ``304 Not Modified`` on a match.

Done as ASGI middleware over the encoded body, so handlers keep returning typed Structs (and the
OpenAPI schema keeps its exact types). The tag is a hash of the bytes: equal answers, equal tags.
"""

from __future__ import annotations

import hashlib
from typing import Any

from litestar.types import ASGIApp, Receive, Send

_PREFIXES = ("/v1/", "/features/")


def etag_of(body: bytes) -> bytes:
    return b'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    if if_none_match.strip() == b"*":
        return True
    candidates = {c.strip().removeprefix(b"W/") for c in if_none_match.split(b",")}
    return etag.removeprefix(b"W/") in candidates


def etag_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not scope["path"].startswith(_PREFIXES):
            await app(scope, receive, send)
            return
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        start: Any = None

        async def send_tagged(message: Any) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 200:
                start = message  # held back until the body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            held, start = start, None
            body: bytes = message.get("body", b"")
            if message.get("more_body", False):  # a streamed body: pass it through untagged
                await send(held)
                await send(message)
                return
            etag = etag_of(body)
            headers = [*held.get("headers", []), (b"etag", etag), (b"vary", b"Authorization")]
            if if_none_match is not None and etag_matches(if_none_match, etag):
                keep = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type")]
                await send({"type": "http.response.start", "status": 304, "headers": keep})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            held["headers"] = headers
            await send(held)
            await send(message)

        await app(scope, receive, send_tagged)

    return middleware
