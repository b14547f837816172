"""``./dev up`` runs NATS with authentication: every service connects as itself, and
``.run/stack.env`` hands people and tools the operator identity (issue #20, item 1)."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors
import pytest

from callstream.contracts import NATS_SERVICES


def _dev(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callstream.devstack", "--root", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def _operator_and_anonymous(url: str) -> None:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)  # as a nats-py tool would
    try:
        assert (await nc.jetstream().account_info()).streams >= 1
    finally:
        await nc.close()
    bare = ",".join(f"nats://{urlsplit(u).hostname}:{urlsplit(u).port}" for u in url.split(","))
    with pytest.raises(nats.errors.Error):
        await nats.connect(bare, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)


def test_up_gives_each_service_its_own_nats_identity(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    up = _dev(root, "up", "--detach", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        run = root / ".run"
        values = dict(line.split("=", 1) for line in (run / "stack.env").read_text().splitlines() if "=" in line)
        url = values["CALLSTREAM_NATS_URL"]
        password_file = Path(values["CALLSTREAM_NATS_OPERATOR_PASSWORD_FILE"])
        assert password_file == run / "nats_operator_password"
        assert password_file.stat().st_mode & 0o077 == 0
        assert urlsplit(url).username == "operator"
        assert urlsplit(url).password == password_file.read_text().strip()
        asyncio.run(_operator_and_anonymous(url))
        state = json.loads((run / "state.json").read_text())
        for name in NATS_SERVICES:
            environ = dict(
                e.split(b"=", 1) for e in Path(f"/proc/{state['pids'][name]}/environ").read_bytes().split(b"\0") if e
            )
            assert environ[b"CALLSTREAM_NATS_USER"].decode() == name
            assert urlsplit(environ[b"CALLSTREAM_NATS_URL"].decode()).password is None
            assert environ[b"CALLSTREAM_NATS_PASSWORD"].decode() != password_file.read_text().strip()
    finally:
        assert _dev(root, "down", env=env).returncode == 0, "down failed"
