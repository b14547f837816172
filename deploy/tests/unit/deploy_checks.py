"""What the deploy checks compare against: the services as the code declares them (their
pyproject entry points and their pydantic ``Settings``), and the manifests as the tools render
them (``kubectl kustomize``, ``docker-compose config``). Nothing here is a list typed by hand, so a
service or a setting added in the code shows up in these tests without touching them."""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from callstream.runtime import ServiceSettings
from callstream.runtime._settings import ENV_PREFIX

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
TOOLS = Path(sys.executable).parent  # hadolint, kubectl and docker-compose come as wheels into the venv


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from the venv: it is pinned in requirements-dev.txt (./dev reinstalls)")
    return str(path)


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def _variable_names(name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [c.upper() for c in alias.choices if isinstance(c, str)]
    return [(ENV_PREFIX + name).upper()]


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


@dataclass(frozen=True)
class ServiceInCode:
    """One service as its distribution declares it."""

    name: str  # gateway: the entry point without its "callstream-" prefix
    folder: str  # services/<folder>
    script: str  # callstream-gateway
    settings: type[ServiceSettings]

    @functools.cached_property
    def fields(self) -> dict[str, FieldInfo]:
        """Environment variable -> the settings field it fills."""
        return {var: f for n, f in self.settings.model_fields.items() for var in _variable_names(n, f)}

    @property
    def variables(self) -> set[str]:
        return set(self.fields)

    @property
    def required(self) -> set[str]:
        return {var for var, f in self.fields.items() if f.is_required()}

    @property
    def secrets(self) -> set[str]:
        return {var for var, f in self.fields.items() if _is_secret(f)}

    @property
    def keeps_data(self) -> bool:
        """It has tables and streams: it needs PostgreSQL and NATS to run, and a setup step (its
        migrations, its streams) before it starts. A service whose Settings do not require the
        database URL (the console: it reads no table and no stream) keeps none, so the deploy gives it
        neither a setup step nor the database's and broker's secrets."""
        return f"{ENV_PREFIX}DATABASE_URL" in self.required

    @property
    def port_variable(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}_PORT"

    @property
    def port(self) -> int:
        field = self.fields.get(self.port_variable)
        assert field is not None, f"{self.script}: its Settings have no {self.port_variable}"
        return int(field.default)

    @property
    def image(self) -> str:
        return self.script

    @property
    def dockerfile(self) -> Path:
        return DEPLOY / "docker" / f"{self.name}.Dockerfile"


# Services in the code that have no image and manifests yet, each with why: they are left out of these
# checks until their deploy files exist (then remove them here and every check applies).
NOT_DEPLOYED_YET: dict[str, str] = {}


def discover_services() -> list[ServiceInCode]:
    found = []
    for pyproject in sorted((REPO / "services").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        for script, target in project.get("scripts", {}).items():
            if not script.startswith("callstream-") or script in NOT_DEPLOYED_YET:
                continue
            package = target.split(":")[0].removesuffix(".__main__")
            settings = importlib.import_module(f"{package}._settings").Settings
            found.append(ServiceInCode(script.removeprefix("callstream-"), pyproject.parent.name, script, settings))
    return found


SERVICES = discover_services()
SERVICE_IDS = [s.name for s in SERVICES]
ALL_VARIABLES = set().union(*(s.variables for s in SERVICES))
SECRET_VARIABLES = set().union(*(s.secrets for s in SERVICES))


@functools.cache
def render(path: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of one kustomization (kubectl's built-in kustomize, from the wheel)."""
    result = run(tool("kubectl"), "kustomize", str(K8S / path))
    assert result.returncode == 0, f"kustomize build of {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    return None


def find_prefixed(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """A generated object (its name carries a content hash)."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]
    assert len(matches) == 1, f"expected one {kind} {prefix}*, found {[d['metadata']['name'] for d in matches]}"
    return matches[0]


COMPOSE_FILE = DEPLOY / "compose.yaml"


def compose_required_variables() -> set[str]:
    """The variables compose.yaml refuses to run without (``${NAME:?...}``)."""
    return set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))


def clean_env(**extra: str) -> dict[str, str]:
    """An environment without the caller's CALLSTREAM_* or secrets, so the checks see only the file."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, **extra}


@functools.cache
def compose_config() -> dict[str, Any]:
    """``docker-compose config``: parses, validates against the Compose specification, interpolates
    and merges the anchors, without a Docker engine. Placeholders stand in for the secrets."""
    env = clean_env(**{name: f"placeholder-{name.lower()}" for name in compose_required_variables()})
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "--format", "json", env=env)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config: dict[str, Any] = json.loads(result.stdout)
    return config
