"""The NATS users and permissions of compose and the Kubernetes NATS Helm values, rendered from
contracts' ``nats_permissions`` (the one table): ``python -m callstream.devstack._nats_deploy``
rewrites them, and a deploy test fails when they differ from the table.

Passwords are never in these files: nats-server reads each from its environment
(``NATS_<IDENTITY>_PASSWORD``), filled from the compose environment or a Kubernetes secret."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from callstream.contracts import NATS_MAX_PAYLOAD, authorization_config, nats_identities, nats_permissions

DEPLOY = Path(__file__).resolve().parents[4]  # deploy/
COMPOSE_FILE = DEPLOY / "compose.yaml"
HELM_AUTH_FILE = DEPLOY / "k8s" / "nats" / "values-auth.yaml"
_COMPOSE_CONTENT = re.compile(r"(  nats-config:\n    content: \|\n)((?:      .*\n|\n)+)")


def password_variable(identity: str) -> str:
    return f"NATS_{identity.upper()}_PASSWORD"


def nats_config_text() -> str:
    """The server config compose mounts (before compose's ``$$`` escaping)."""
    refs = {i: "$" + password_variable(i) for i in nats_identities()}
    return f"max_payload: {NATS_MAX_PAYLOAD}\n" + authorization_config(refs, raw=True)


def compose_content_block() -> str:
    # Compose interpolates ``$`` everywhere in its file, config contents included: ``$$`` is a ``$``.
    lines = nats_config_text().replace("$", "$$").splitlines()
    return "".join(f"      {line}\n" if line else "\n" for line in lines) + "\n"


def helm_auth_values() -> dict[str, Any]:
    users: list[dict[str, Any]] = []
    for identity in nats_identities():
        # The chart renders ``<< ... >>`` unquoted: nats-server expands the variable.
        user: dict[str, Any] = {"user": identity, "password": f"<< ${password_variable(identity)} >>"}
        perms = nats_permissions(identity)
        if perms is not None:
            user["permissions"] = {
                "publish": {"allow": list(perms.publish)},
                "subscribe": {"allow": list(perms.subscribe)},
            }
        users.append(user)
    env = {
        password_variable(i): {"valueFrom": {"secretKeyRef": {"name": "callstream-nats", "key": f"{i}-password"}}}
        for i in nats_identities()
    }
    return {"config": {"merge": {"authorization": {"users": users}}}, "container": {"env": env}}


HELM_HEADER = """\
# NATS users, one per callstream service plus the operator, each allowed only what it needs.
# Generated from callstream.contracts nats_permissions: `python -m callstream.devstack._nats_deploy`.
# Use with either values file:
#   helm upgrade --install nats nats/nats --version 1.3.16 -f deploy/k8s/nats/values.yaml -f deploy/k8s/nats/values-auth.yaml
# The passwords come from the secret `callstream-nats` (keys <identity>-password), which the
# services read too (deploy/README.md, "NATS identities").
"""


def helm_auth_text() -> str:
    return HELM_HEADER + str(yaml.safe_dump(helm_auth_values(), sort_keys=False, width=1000))


def render_compose(text: str) -> str:
    rendered, n = _COMPOSE_CONTENT.subn(lambda m: m.group(1) + compose_content_block(), text, count=1)
    if n != 1:
        raise ValueError("compose.yaml has no configs.nats-config.content block")
    return rendered


def main() -> int:
    COMPOSE_FILE.write_text(render_compose(COMPOSE_FILE.read_text()))
    HELM_AUTH_FILE.write_text(helm_auth_text())
    print(f"wrote {COMPOSE_FILE} and {HELM_AUTH_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
