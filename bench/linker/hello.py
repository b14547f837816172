"""The ceiling: a hello-world litestar GET, served exactly as the linker is (uvicorn, uvloop,
httptools, one process, no access log: ``callstream.runtime.serve_http``)."""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar([hello], logging_config=None)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
