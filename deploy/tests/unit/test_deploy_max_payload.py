"""Every deployment gives NATS the same ``max_payload``, large enough for the gateway's body limit
with the dead letter of such a meeting (issue #17, item 3; gateway ``_payload.py``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from deploy_checks import COMPOSE_FILE, K8S, compose_config

from callstream.contracts import NATS_MAX_PAYLOAD, max_payload_needed
from callstream.devstack import NatsServer
from callstream.devstack._servers import nats_server_binary
from callstream.gateway._payload import RAW_CALL_ENVELOPE_BYTES
from callstream.gateway._settings import Settings


def _config_max_payload(text: str) -> int:
    found = re.search(r"^\s*max_payload:\s*(\d+)\s*$", text, re.MULTILINE)
    assert found, text
    return int(found.group(1))


def test_the_limit_carries_the_largest_body_and_its_dead_letter() -> None:
    max_body = Settings.model_fields["max_body"].default
    assert max_payload_needed(max_body + RAW_CALL_ENVELOPE_BYTES) <= NATS_MAX_PAYLOAD
    assert NATS_MAX_PAYLOAD <= 64 * 1024 * 1024  # NATS's hard limit


def test_compose_gives_nats_the_limit() -> None:
    config = compose_config()
    nats = config["services"]["nats"]
    (mounted,) = nats["configs"]
    assert nats["command"][:2] == ["-c", mounted["target"]]
    assert _config_max_payload(config["configs"][mounted["source"]]["content"]) == NATS_MAX_PAYLOAD
    assert "max_payload" in COMPOSE_FILE.read_text()


def test_the_helm_values_give_nats_the_limit() -> None:
    for name in ("values.yaml", "values-dev.yaml"):
        values = yaml.safe_load((K8S / "nats" / name).read_text())
        assert values["config"]["merge"]["max_payload"] == NATS_MAX_PAYLOAD, name


def test_the_dev_stack_server_config_is_valid_and_has_the_limit(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "js", port=4222, name="cfg-check")
    path = server.write_config()
    assert _config_max_payload(path.read_text()) == NATS_MAX_PAYLOAD
    assert server.command()[1:3] == ["-c", str(path)]
    checked = subprocess.run([str(nats_server_binary()), "-c", str(path), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + checked.stdout
