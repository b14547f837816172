"""A lean HTTP/1.1 keep-alive client for the latency benchmark's sender and prober.

Written by hand because neither available option fits: httpx spends ~1 ms of CPU per request and its
pool degrades badly with thousands of queued requests (at 500/s the Python sender, not the stack,
became what was measured), and wrk cannot pace requests at a fixed rate nor report when each one was
answered. Requests are prepared as bytes up front; each connection sends one and reads its answer
(status line, headers, a Content-Length body) before the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

Handler = Callable[[int, bytes], None]  # called with the status and body; must not block


def request_bytes(method: str, path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Http1Pool:
    """``connections`` keep-alive connections taking prepared requests from one queue."""

    def __init__(self, base_url: str, connections: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.netloc = parts.netloc
        self.queue: asyncio.Queue[tuple[bytes, Handler] | None] = asyncio.Queue()
        self.workers = [asyncio.create_task(self._work()) for _ in range(connections)]
        self.errors = 0

    def submit(self, request: bytes, on_answer: Handler) -> None:
        self.queue.put_nowait((request, on_answer))

    async def close(self) -> None:
        for _ in self.workers:
            self.queue.put_nowait(None)
        await asyncio.gather(*self.workers, return_exceptions=True)

    async def _work(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (item := await self.queue.get()) is not None:
            request, on_answer = item
            for _attempt in range(3):  # a connection the server closed is opened again
                try:
                    if writer is None or reader is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    writer.write(request)
                    status, body = await _read_response(reader)
                    break
                except (OSError, asyncio.IncompleteReadError):
                    if writer is not None:
                        writer.close()
                    reader = writer = None
            else:
                self.errors += 1
                self.queue.task_done()
                continue
            on_answer(status, body)
            self.queue.task_done()
        if writer is not None:
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise OSError("chunked answers are not expected from the services")
    return status, (await reader.readexactly(length) if length else b"")
