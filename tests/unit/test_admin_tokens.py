"""Every service with an admin API reads its own admin token, of at least 32 characters: a shorter
one stops the service at start with one line naming the variable."""

from __future__ import annotations

import importlib
import os
import secrets

import pytest

from callstream.devstack import ADMIN_TOKEN_ENVS, SERVICES, own_env

WITH_ADMIN = [s for s in SERVICES if s.admin_token_env]


@pytest.fixture
def base_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("CALLSTREAM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", "postgresql://u@db.internal:5432/x")
    monkeypatch.setenv("CALLSTREAM_NATS_URL", "nats://nats.internal:4222")
    monkeypatch.setenv("CALLSTREAM_SECRET_KEY", "k1:" + secrets.token_urlsafe(32))
    return monkeypatch


def test_the_services_with_an_admin_api_each_have_their_own_variable() -> None:
    assert ADMIN_TOKEN_ENVS == (
        "CALLSTREAM_GATEWAY_ADMIN_TOKEN",
        "CALLSTREAM_LINKER_ADMIN_TOKEN",
        "CALLSTREAM_NORMALIZER_ADMIN_TOKEN",
        "CALLSTREAM_SCHEDULER_ADMIN_TOKEN",
    )
    everything = dict.fromkeys(ADMIN_TOKENS_AND_MORE, "x")
    for service in SERVICES:
        held = set(own_env(service, everything)) & set(ADMIN_TOKEN_ENVS)
        assert held == ({service.admin_token_env} if service.admin_token_env else set()), service.name


ADMIN_TOKENS_AND_MORE = (*ADMIN_TOKEN_ENVS, "CALLSTREAM_SECRET_KEY")


@pytest.mark.parametrize("service", WITH_ADMIN, ids=lambda s: s.name)
def test_a_31_character_token_is_refused_at_start_naming_the_variable(
    base_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], service: object
) -> None:
    variable = service.admin_token_env  # type: ignore[attr-defined]
    load = importlib.import_module(service.package).load  # type: ignore[attr-defined]
    short = "s" * 31
    base_env.setenv(variable, short)
    with pytest.raises(SystemExit) as exit_info:
        load()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f": {variable} " in err
    assert "at least 32 characters" in err
    assert short not in err

    base_env.setenv(variable, "s" * 32)
    assert load().admin().accepts("s" * 32)


@pytest.mark.parametrize("service", WITH_ADMIN, ids=lambda s: s.name)
def test_another_services_token_is_not_read(base_env: pytest.MonkeyPatch, service: object) -> None:
    """A service reads only its own variable: given every other's, it has no admin token (the
    scheduler, which requires one, does not start)."""
    mine = service.admin_token_env  # type: ignore[attr-defined]
    for other in ADMIN_TOKEN_ENVS:
        if other != mine:
            base_env.setenv(other, "o" * 40)
    load = importlib.import_module(service.package).load  # type: ignore[attr-defined]
    if service.name == "scheduler":  # type: ignore[attr-defined]
        with pytest.raises(SystemExit):
            load()
        return
    admin = load().admin()
    assert not admin.configured
    assert not admin.accepts("o" * 40)
