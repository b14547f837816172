"""Integration helpers (imported by the tests and conftest): publishing raw calls, reading
streams, waiting, and real ``callstream-normalizer serve`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from callstream.contracts import MessageUpserted
from callstream.devstack._servers import free_port, service_nats_env, wait_port
from callstream.normalizer._settings import Settings

NORMALIZER = Path(sys.executable).parent / "callstream-normalizer"


def settings_for(database_url: str, nats_url: str, **variables: Any) -> Settings:
    """Settings as the service builds them; ``variables`` by their CALLSTREAM_NORMALIZER_* names."""
    return Settings.model_validate({"database_url": database_url, "nats_url": nats_url, **variables})


async def publish_raw(js: Any, data: bytes, subject: str, msg_id: str | None = None) -> int:
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    ack = await js.publish(subject, data, headers=headers)
    return int(ack.seq)


async def stream_messages(js: Any, stream: str, subject: str | None = None) -> list[Any]:
    """Every message of a stream (for assertions), in stream order."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:  # deleted (e.g. a redriven DLQ entry)
            continue
        if subject is None or msg.subject == subject:
            out.append(msg)
    return out


def upserted(msgs: list[Any]) -> list[MessageUpserted]:
    return [msgspec.json.decode(m.data, type=MessageUpserted) for m in msgs]


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


class NormalizerProcess:
    """A real ``callstream-normalizer serve`` process on the test servers."""

    def __init__(self, database_url: str, nats_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        # As deployed: the normalizer's own NATS identity, not the operator's the fixtures hand out.
        self.env = service_nats_env(
            "normalizer",
            {
                **os.environ,
                "CALLSTREAM_DATABASE_URL": database_url,
                "CALLSTREAM_NATS_URL": nats_url,
                "CALLSTREAM_NORMALIZER_PORT": str(self.port),
                "CALLSTREAM_LOG_FORMAT": "json",
                "CALLSTREAM_NORMALIZER_RETRY_BASE_SECONDS": "0.2",
                "CALLSTREAM_NORMALIZER_OUTBOX_SWEEP_SECONDS": "1",
                **env,
            },
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NormalizerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([str(NORMALIZER), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/live", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"normalizer did not start; log: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
