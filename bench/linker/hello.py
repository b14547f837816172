"""The ceiling: a hello-world litestar GET, served exactly as the linker is (uvicorn, uvloop,
httptools, one process, no access log: ``callstream.runtime.serve_http``). ``runtime`` builds it
with ``callstream.runtime.create_app`` instead, to show what the shared middleware costs."""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"status": "ok"}


def build(flavour: str) -> Litestar:
    if flavour == "runtime":
        from callstream.runtime import create_app

        return create_app(service="hello", title="hello", route_handlers=[hello], checks={})
    return Litestar([hello], logging_config=None)


if __name__ == "__main__":
    uvicorn.run(
        build(sys.argv[2] if len(sys.argv) > 2 else "plain"),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
