"""``./dev up --detach`` reaches ready, writes stack.env, and ``./dev down`` leaves no process."""

import os
import subprocess
import sys
from pathlib import Path

import httpx

from callstream.devstack import SERVICES

ADMIN_TOKENS = {
    "gateway": "CALLSTREAM_GATEWAY_ADMIN_TOKEN",
    "linker": "CALLSTREAM_LINKER_ADMIN_TOKEN",
    "normalizer": "CALLSTREAM_NORMALIZER_ADMIN_TOKEN",
    "scheduler": "CALLSTREAM_SCHEDULER_ADMIN_TOKEN",
}
REQUIRED = [s.url_env for s in SERVICES] + [
    "CALLSTREAM_DATABASE_URL",
    "CALLSTREAM_NATS_URL",
    *ADMIN_TOKENS.values(),
]
# One admin route of each service with an admin API.
ADMIN_ROUTES = {
    "gateway": "/v1/integrations",
    "linker": "/v1/messages?workspace_id=acme",
    "scheduler": "/v1/sync-state?workspace_id=acme",
}


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
        tokens = {name: (root / ".run" / f"{name}_admin_token").read_text().strip() for name in ADMIN_TOKENS}
        assert {name: values[var] for name, var in ADMIN_TOKENS.items()} == tokens
        assert len(set(tokens.values())) == len(tokens)
        assert all(len(t) >= 32 for t in tokens.values())
        assert "CALLSTREAM_ADMIN_TOKEN" not in values
        urls = {s.name: values[s.url_env] for s in SERVICES}
        # Each token opens its own service's admin API and no other's.
        for service, route in ADMIN_ROUTES.items():
            for owner, token in tokens.items():
                r = httpx.get(urls[service] + route, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                assert r.status_code == (200 if owner == service else 401), (owner, service, r.text)
        # ...and a service's environment holds its own token only.
        state = __import__("json").loads((root / ".run" / "state.json").read_text())
        for name in ("gateway", "linker", "normalizer", "scheduler"):
            environ = Path(f"/proc/{state['pids'][name]}/environ").read_bytes().split(b"\0")
            held = {e.split(b"=", 1)[0].decode() for e in environ if b"_ADMIN_TOKEN=" in e}
            assert held == ({ADMIN_TOKENS[name]} if name in ADMIN_TOKENS else set()), name
        # The console: its address and sign-in token in stack.env, ready, and started with the others'
        # tokens under its own names only (no service's own variable, no database or NATS secret).
        console = values["CALLSTREAM_CONSOLE_URL"]
        assert values["CALLSTREAM_CONSOLE_ADMIN_TOKEN"] == (root / ".run" / "console_admin_token").read_text().strip()
        assert httpx.get(console + "/health/ready", timeout=5).status_code == 200
        assert httpx.get(console + "/", timeout=5, follow_redirects=False).headers["location"].startswith("/login")
        environ = dict(
            e.decode().split("=", 1)
            for e in Path(f"/proc/{state['pids']['console']}/environ").read_bytes().split(b"\0")
            if b"=" in e
        )
        assert not set(environ) & set(ADMIN_TOKENS.values())
        assert "CALLSTREAM_DATABASE_URL" not in environ
        assert "CALLSTREAM_NATS_URL" not in environ
        assert {name: environ[f"CALLSTREAM_CONSOLE_{name.upper()}_TOKEN"] for name in ADMIN_TOKENS} == tokens
        assert environ["CALLSTREAM_CONSOLE_SCHEDULER_URL"] == urls["scheduler"]
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
    # a second start on the same .run keeps the data and the admin tokens
    up2 = _dev(root, "up", "--detach", env=env)
    try:
        assert up2.returncode == 0, up2.stdout + up2.stderr
        assert {name: (root / ".run" / f"{name}_admin_token").read_text().strip() for name in ADMIN_TOKENS} == tokens
    finally:
        assert _dev(root, "down", env=env).returncode == 0
