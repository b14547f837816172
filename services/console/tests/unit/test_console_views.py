"""What the pages show, decided without I/O: status words and tones, relative times, sync bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callstream.console import _app, _views

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("gateway", "sync", "word", "tone"),
    [
        ("active", "success", "healthy", "ok"),
        ("active", "syncing", "syncing", "busy"),
        ("active", "error", "failing", "bad"),
        ("active", "reauth_required", "needs reconnect", "bad"),
        ("reauth_required", "success", "needs reconnect", "bad"),  # the gateway knows first
        ("disabled", "success", "disabled", "off"),
        ("active", None, "not synced yet", "warn"),
    ],
)
def test_an_integration_status_is_a_word_and_a_tone(gateway: str, sync: str | None, word: str, tone: str) -> None:
    state = None if sync is None else {"status": sync, "consecutive_failures": 2}
    status = _views.integration_status({"status": gateway}, state)
    assert (status.word, status.tone) == (word, tone)
    assert status.hint


def test_a_refused_credential_in_the_health_checks_asks_for_a_reconnect() -> None:
    health = {"checks": [{"name": "credentials_valid", "ok": False, "reason": "the last run got HTTP 401"}]}
    status = _views.integration_status({"status": "active"}, {"status": "error"}, health)
    assert (status.word, status.tone) == ("needs reconnect", "bad")
    assert "HTTP 401" in status.hint
    assert _views.integration_status({"status": "active"}, {"status": "error"}, {"checks": []}).word == "failing"


def test_times_are_relative_with_the_absolute_utc() -> None:
    assert _views.relative(NOW - timedelta(minutes=4), now=NOW) == "4 min ago"
    assert _views.relative((NOW + timedelta(hours=2)).isoformat(), now=NOW) == "in 2 h"
    assert _views.relative("2026-12-02T11:59:58Z", now=NOW) == "just now"
    assert _views.relative(None, now=NOW) == ""
    assert _views.absolute("2026-12-02T13:00:00+01:00") == "2026-12-02 12:00:00 UTC"
    assert _views.duration("2026-12-02T11:00:00Z", "2026-12-02T11:02:05Z") == "2 min 5 s"


def test_the_sync_buttons_send_the_schedulers_presets() -> None:
    assert _app._sync_body({"preset": "test"}) == {"mode": "latest", "limit": 5}
    assert _app._sync_body({"preset": "quick"}) == {"days": 30}
    assert _app._sync_body({"preset": "backfill"}) == {"mode": "backfill"}
    body = _app._sync_body({"preset": "range", "from": "2026-11-01", "to": "2026-11-02"})
    assert body == {"mode": "range", "from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    with pytest.raises(ValueError, match="on or after"):
        _app._sync_body({"preset": "range", "from": "2026-11-02", "to": "2026-11-01"})
    with pytest.raises(ValueError, match="start date"):
        _app._sync_body({"preset": "range", "from": ""})


def test_a_new_integration_needs_every_credential_of_its_provider() -> None:
    gong = _app._new_integration(
        {"provider": "gong", "workspace_id": " acme ", "access_key": "k", "access_key_secret": "s", "base_url": ""}
    )
    assert gong == {
        "workspace_id": "acme",
        "provider": "gong",
        "credentials": {"access_key": "k", "access_key_secret": "s"},
    }
    with pytest.raises(ValueError, match="every Gong credential"):
        _app._new_integration({"provider": "gong", "workspace_id": "acme", "access_key": "k"})
    with pytest.raises(ValueError, match="Fathom or Gong"):
        _app._new_integration({"provider": "zoom", "workspace_id": "acme"})


@pytest.mark.parametrize(
    ("wanted", "used"),
    [
        ("/integrations?x=1", "/integrations?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        (None, "/"),
        ("/\\evil", "/"),
    ],
)
def test_only_a_local_path_is_followed_after_sign_in(wanted: str | None, used: str) -> None:
    assert _app._local_path(wanted) == used
