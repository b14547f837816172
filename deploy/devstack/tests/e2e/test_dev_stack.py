"""``./dev up --detach`` reaches ready, writes stack.env, and ``./dev down`` leaves no process."""

import os
import subprocess
import sys
from pathlib import Path

import httpx

from callstream.devstack import SERVICES

REQUIRED = [s.url_env for s in SERVICES] + [
    "CALLSTREAM_DATABASE_URL",
    "CALLSTREAM_NATS_URL",
    "CALLSTREAM_ADMIN_TOKEN",
]


def _dev(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callstream.devstack", "--root", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] != "Z"


def test_up_detach_status_down(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    up = _dev(root, "up", "--detach", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        values = dict(
            line.split("=", 1) for line in (root / ".run" / "stack.env").read_text().splitlines() if "=" in line
        )
        assert set(REQUIRED) <= set(values)
        for service in SERVICES:
            assert httpx.get(values[service.url_env] + "/health/ready", timeout=5).status_code == 200
        token = (root / ".run" / "admin_token").read_text().strip()
        assert values["CALLSTREAM_ADMIN_TOKEN"] == token
        status = _dev(root, "status", env=env)
        assert status.returncode == 0
        assert status.stdout.count("ready") >= len(SERVICES)
        again = _dev(root, "up", "--detach", env=env)
        assert again.returncode == 1
        assert "already running" in again.stderr
        pids = [int(p) for p in __import__("json").loads((root / ".run" / "state.json").read_text())["pids"].values()]
        pg_pid = int((root / ".run" / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
    finally:
        down = _dev(root, "down", env=env)
    assert down.returncode == 0, down.stderr
    assert [p for p in [*pids, pg_pid] if _alive(p)] == []
    # a second start on the same .run keeps the data and the admin token
    up2 = _dev(root, "up", "--detach", env=env)
    try:
        assert up2.returncode == 0, up2.stdout + up2.stderr
        assert (root / ".run" / "admin_token").read_text().strip() == token
    finally:
        assert _dev(root, "down", env=env).returncode == 0
