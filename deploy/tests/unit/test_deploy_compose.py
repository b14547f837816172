"""deploy/compose.yaml, as ``docker-compose config`` resolves it (no Docker engine needed)."""

from __future__ import annotations

from typing import Any

import yaml
from deploy_checks import (
    COMPOSE_FILE,
    DEPLOY,
    REPO,
    SECRET_VARIABLES,
    SERVICES,
    ServiceInCode,
    clean_env,
    compose_config,
    run,
    tool,
)

from callstream.devstack import MIGRATION_ORDER

PUBLISHED = {"gateway": 8080, "linker": 8081, "console": 8084}  # the HTTP APIs reached from outside the network
LOCAL_ONLY = {"console"}  # published on the host's loopback only: its cookies cannot be Secure over plain http
# What a service that keeps no data is never given (the console: no database, no broker, no setup).
DATA_VARIABLES = {"CALLSTREAM_DATABASE_URL", "CALLSTREAM_NATS_URL", "CALLSTREAM_NATS_USER", "CALLSTREAM_NATS_PASSWORD"}


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose_config()["services"]
    return found


def test_compose_refuses_to_start_without_its_secrets() -> None:
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "--quiet", env=clean_env())
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_no_secret_value_is_written_in_the_file() -> None:
    """Every secret is an interpolation of the caller's environment, never a value in the file."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())  # anchors and merge keys resolved, nothing interpolated
    checked = 0
    for name, svc in raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if key in SECRET_VARIABLES or key == "POSTGRES_PASSWORD":
                assert "${" in str(value), f"{name}: {key} is written in compose.yaml"
                checked += 1
    assert checked >= len(SERVICES) * 2, "every service and its setup job get at least the database URL"


def test_servers_keep_their_data_in_volumes() -> None:
    config = compose_config()
    assert {"nats-data", "postgres-data"} <= set(config["volumes"])
    assert any(v["source"] == "nats-data" for v in services()["nats"]["volumes"])
    assert any(v["source"] == "postgres-data" for v in services()["postgres"]["volumes"])
    assert "--jetstream" in services()["nats"]["command"]
    for server in ("nats", "postgres"):
        assert services()[server]["healthcheck"]["test"], f"{server} needs a health check for depends_on"


def test_setup_runs_once_in_migration_order() -> None:
    chain = []
    name = "setup-linker"
    while name.startswith("setup-"):
        chain.append(name.removeprefix("setup-"))
        job = services()[name]
        assert job["command"] == ["setup"]
        assert job["restart"] == "no"
        previous = [d for d, c in job["depends_on"].items() if d.startswith("setup-")]
        for dependency in previous:
            assert job["depends_on"][dependency]["condition"] == "service_completed_successfully"
        name = previous[0] if previous else ""
    assert list(reversed(chain)) == list(MIGRATION_ORDER)
    # A service without tables or streams (the console) has nothing to set up, so no setup job.
    assert {s.name for s in SERVICES if s.keeps_data} == set(chain)
    assert not {f"setup-{s.name}" for s in SERVICES if not s.keeps_data} & set(services())


def test_service_is_built_checked_and_started_after_setup(service: ServiceInCode) -> None:
    svc = services()[service.name]
    assert svc["build"]["dockerfile"] == str(service.dockerfile.relative_to(REPO))
    assert svc["build"]["context"] == str(REPO)
    assert svc["image"].split(":")[0] == service.image
    assert svc["healthcheck"]["interval"], "the image's HEALTHCHECK runs on this schedule"
    conditions = {name: dep["condition"] for name, dep in svc["depends_on"].items()}
    if service.keeps_data:
        assert conditions == {
            "nats": "service_healthy",
            "postgres": "service_healthy",
            "setup-linker": "service_completed_successfully",
        }
    else:
        # It calls the services' HTTP APIs only: it starts with them, and does not wait for them to be
        # healthy (the console is where one sees that a service is not).
        assert conditions == {s.name: "service_started" for s in SERVICES if s.keeps_data}
    published = {int(p["published"]) for p in svc.get("ports", [])}
    assert published == ({PUBLISHED[service.name]} if service.name in PUBLISHED else set())
    if service.name in LOCAL_ONLY:
        assert all(p.get("host_ip") == "127.0.0.1" for p in svc["ports"]), f"{service.name}: this host only"
    assert service.dockerfile.parent == DEPLOY / "docker"


def test_service_and_its_setup_get_exactly_known_variables(service: ServiceInCode) -> None:
    if not service.keeps_data:
        assert not DATA_VARIABLES & set(services()[service.name]["environment"])
    for name in (service.name, f"setup-{service.name}") if service.keeps_data else (service.name,):
        env = services()[name]["environment"]
        unknown = set(env) - service.variables
        assert not unknown, f"{name}: {sorted(unknown)} are not settings of {service.script}"
        missing = service.required - set(env)
        assert not missing, f"{name}: {service.script} requires {sorted(missing)}"
        assert env["CALLSTREAM_HOST"] == "0.0.0.0"
    assert services()[service.name]["environment"][service.port_variable] == str(service.port)
