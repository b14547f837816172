"""The one admin bearer guard every service uses, and readiness that tells strangers only ready or not."""

import hmac
import json
from typing import Any

import pytest
import structlog
from litestar import get
from litestar.testing import TestClient

from callstream.runtime import ADMIN_TOKEN_MIN_LENGTH, AdminToken, ServiceSettings, configure_logging, create_app
from callstream.runtime._admin import hmac as admin_hmac

TOKEN = "cs_admin_" + "a" * 40
OTHER = "cs_admin_" + "b" * 40


def test_the_compare_is_over_fixed_length_digests_whatever_the_length(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(admin_hmac, "compare_digest", spy)
    admin = AdminToken(TOKEN, "CALLSTREAM_DEMO_ADMIN_TOKEN")
    for presented in ("", "x", TOKEN[:-1], TOKEN, TOKEN + "x", "y" * 10_000):
        assert admin.accepts(presented) == (presented == TOKEN)
    # Every compare saw two 32-byte SHA-256 digests: how long the presented token was (or how
    # much of it matched) cannot change the time the compare takes.
    assert compared
    assert set(compared) == {(32, 32)}


def test_only_the_own_token_as_a_bearer_is_accepted() -> None:
    admin = AdminToken(TOKEN, "CALLSTREAM_DEMO_ADMIN_TOKEN")
    assert admin.accepts_header(f"Bearer {TOKEN}")
    assert admin.accepts_header(f"bearer {TOKEN} ")
    assert not admin.accepts_header(f"Bearer {OTHER}")  # another service's token
    assert not admin.accepts_header(f"Basic {TOKEN}")
    assert not admin.accepts_header(TOKEN)
    assert not admin.accepts_header("Bearer ")
    assert TOKEN not in repr(admin)
    closed = AdminToken(None, "CALLSTREAM_DEMO_ADMIN_TOKEN")
    assert not closed.configured
    assert not closed.accepts("")
    assert not closed.accepts_header("Bearer ")


@get("/admin/guarded", sync_to_thread=False, guards=[AdminToken(TOKEN, "CALLSTREAM_DEMO_ADMIN_TOKEN")])
def guarded() -> dict[str, str]:
    return {"ok": "yes"}


@get("/admin/closed", sync_to_thread=False, guards=[AdminToken(None, "CALLSTREAM_DEMO_ADMIN_TOKEN")])
def closed() -> dict[str, str]:
    return {"ok": "yes"}


def test_as_a_route_guard() -> None:
    app = create_app(service="demo", title="demo", route_handlers=[guarded, closed], checks={})
    with TestClient(app) as client:
        assert client.get("/admin/guarded", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        wrong = client.get("/admin/guarded", headers={"Authorization": f"Bearer {OTHER}"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "unauthorized"
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/admin/guarded").status_code == 401
        shut = client.get("/admin/closed", headers={"Authorization": f"Bearer {TOKEN}"})
        assert shut.status_code == 401
        assert "CALLSTREAM_DEMO_ADMIN_TOKEN" in shut.json()["detail"]


DSN_ERROR = 'connection to server at "db.internal" (10.0.0.7), port 5432 failed: role "callstream_rw" does not exist'


async def _database() -> str | None:
    raise OSError(DSN_ERROR)


async def _broker() -> str | None:
    return None


async def _optional() -> str | None:
    return "link-cache-feed down for 40s (ConnectionRefusedError)"


@pytest.fixture
def json_logs() -> Any:
    configure_logging("demo", "info", "json")
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_anonymous_readiness_is_ready_or_not_and_the_details_go_to_the_log(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = AdminToken(TOKEN, "CALLSTREAM_DEMO_ADMIN_TOKEN")
    checks = {"database": _database, "broker": _broker, "optional_workers": _optional}
    app = create_app(service="demo", title="demo", route_handlers=[], checks=checks, admin=admin)
    with TestClient(app) as client:
        anonymous = client.get("/health/ready")
        wrong = client.get("/health/ready", headers={"Authorization": f"Bearer {OTHER}"})
        again = client.get("/health/ready")
        operator = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code == 503
    assert anonymous.json() == {
        "status": "not_ready",
        "checks": {"database": "failing", "broker": "ok", "optional_workers": "degraded"},
    }
    assert wrong.json() == anonymous.json() == again.json()
    for leak in ("db.internal", "10.0.0.7", "callstream_rw", "OSError", "ConnectionRefusedError", "link-cache"):
        assert leak not in anonymous.text
    # The service's own admin token sees what the log sees.
    assert operator.status_code == 503
    assert operator.json()["checks"]["database"] == f"OSError: {DSN_ERROR}"
    assert operator.json()["checks"]["optional_workers"].startswith("link-cache-feed down")
    # The log has the details, once for an unchanged state however often the probe asks.
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"readiness"' in line]
    assert len(lines) == 1, lines
    assert lines[0]["status"] == "not_ready"
    assert lines[0]["checks"]["database"] == f"OSError: {DSN_ERROR}"
    assert "broker" not in lines[0]["checks"]


def test_readiness_says_ready_when_only_something_optional_is_down() -> None:
    app = create_app(service="demo", title="demo", route_handlers=[], checks={"broker": _broker, "o": _optional})
    with TestClient(app) as client:
        r = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})  # no admin configured
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"broker": "ok", "o": "degraded"}}


def test_the_shared_admin_token_is_refused_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from callstream.runtime import load_settings

    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", "postgresql://u@db.internal:5432/x")
    monkeypatch.setenv("CALLSTREAM_NATS_URL", "nats://nats.internal:4222")
    monkeypatch.setenv("CALLSTREAM_ADMIN_TOKEN", "x" * ADMIN_TOKEN_MIN_LENGTH)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings, "demo")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: CALLSTREAM_ADMIN_TOKEN is no longer read")
    assert "CALLSTREAM_SCHEDULER_ADMIN_TOKEN" in err
    assert "x" * ADMIN_TOKEN_MIN_LENGTH not in err
