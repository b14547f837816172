"""Compose and the Kubernetes NATS values carry contracts' NATS users and permissions exactly
(issue #20, item 1): rendered from the one table, valid for nats-server, passwords only by name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from deploy_checks import compose_config

from callstream.contracts import NATS_OPERATOR, NATS_SERVICES, nats_identities
from callstream.devstack._nats_deploy import HELM_AUTH_FILE, helm_auth_values, nats_config_text, password_variable
from callstream.devstack._servers import nats_server_binary


def test_compose_gives_nats_the_permission_table() -> None:
    config = compose_config()
    (mounted,) = config["services"]["nats"]["configs"]
    # `config` prints a file compose could read again: `$` stays escaped as `$$`.
    assert config["configs"][mounted["source"]]["content"].replace("$$", "$") == nats_config_text()
    env = config["services"]["nats"]["environment"]
    assert {password_variable(i) for i in nats_identities()} <= set(env)


def test_compose_services_connect_as_themselves_and_setup_as_the_operator() -> None:
    services = compose_config()["services"]
    for name in NATS_SERVICES:
        env = services[name]["environment"]
        assert env["CALLSTREAM_NATS_USER"] == name
        assert env["CALLSTREAM_NATS_PASSWORD"] == f"placeholder-{password_variable(name).lower()}"
        setup = services[f"setup-{name}"]["environment"]
        assert setup["CALLSTREAM_NATS_USER"] == NATS_OPERATOR


def test_the_helm_values_give_nats_the_permission_table() -> None:
    assert yaml.safe_load(HELM_AUTH_FILE.read_text()) == helm_auth_values()


def test_the_rendered_config_is_valid_for_nats_server(tmp_path: Path) -> None:
    path = tmp_path / "nats.conf"
    path.write_text(nats_config_text())
    env = dict(os.environ) | {password_variable(i): f"pw-{i}" for i in nats_identities()}
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(path), "-t"], capture_output=True, text=True, env=env
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
