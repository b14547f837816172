"""The ceilings: a hello-world GET served exactly as the linker is (``callstream.runtime.serve_asgi``:
one process, no access log), on the server named on the command line.

  plain    a litestar app with one route (the issue's ceiling)
  runtime  the same built by ``callstream.runtime.create_app``, to show what the shared middleware costs
  raw      a bare ASGI callable: no framework at all, the best an ASGI answer can do on this server
  raw_rsgi the same answer as an RSGI first answer in callstream.runtime.AsgiOverRsgi, exactly as
           the linker answers cached links on granian: the best any Python answer can do there,
           so the linker's fair ceiling

    python hello.py <port> <plain|runtime|raw|raw_rsgi> <granian|uvicorn>
"""

from __future__ import annotations

import sys
from typing import Any

from litestar import Litestar, get

from callstream.runtime import AsgiOverRsgi, serve_asgi

BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


@get("/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"status": "ok"}


async def raw(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = "lifespan.startup.complete" if message["type"] == "lifespan.startup" else None
            await send({"type": done or "lifespan.shutdown.complete"})
            if done is None:
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


RSGI_HEADERS = [("content-type", "application/json")]  # granian adds content-length


def answer_rsgi(scope: Any, protocol: Any) -> bool:
    protocol.response_bytes(200, RSGI_HEADERS, BODY)
    return True


def build(flavour: str) -> Any:
    if flavour == "raw":
        return raw
    if flavour == "raw_rsgi":
        return AsgiOverRsgi(raw, first=answer_rsgi)
    if flavour == "runtime":
        from callstream.runtime import create_app

        return create_app(service="hello", title="hello", route_handlers=[hello], checks={})
    return Litestar([hello], logging_config=None)


if __name__ == "__main__":
    serve_asgi(build(sys.argv[2]), "127.0.0.1", int(sys.argv[1]), server=sys.argv[3])  # type: ignore[arg-type]
