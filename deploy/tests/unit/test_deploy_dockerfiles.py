"""Each service has its own Dockerfile: it lints clean with hadolint, and its structure is what the
deployment relies on (multi-stage, only its own distribution, non-root, health check, entry point)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from deploy_checks import ALL_VARIABLES, DEPLOY, SERVICES, ServiceInCode, run, tool
from dockerfile_parse import DockerfileParser

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(path), env_replace=False)
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction, value in instructions(path):
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, value))
    return result


def env_pairs(stage: list[tuple[str, str]]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for instruction, value in stage:
        if instruction == "ENV":
            for word in shlex.split(value):
                key, _, val = word.partition("=")
                pairs[key] = val
    return pairs


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    result = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step can fail: an unpinned base image and an unpinned pip install are findings."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install httpx\n")
    result = run(tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout
    assert "DL3013" in result.stdout


def test_every_dockerfile_belongs_to_a_service() -> None:
    assert {p.stem for p in DOCKERFILES} == {s.name for s in SERVICES}


def test_image_is_multi_stage_and_installs_only_its_service(service: ServiceInCode) -> None:
    assert service.dockerfile.is_file(), f"no Dockerfile for {service.script} at {service.dockerfile}"
    build, *rest = stages(service.dockerfile)
    assert rest, "expected a build stage and a run stage"
    assert build[0][1].lower().endswith(" as build")
    copied = {source for i, v in build if i == "COPY" for source in v.split()[:-1]}
    own = f"services/{service.folder}/"
    locks = {"deploy/docker/requirements/build.txt", f"deploy/docker/requirements/{service.name}.txt"}
    assert copied == {*locks, "contracts/", "runtime/", own}, copied
    install = " ".join(v for i, v in build if i == "RUN")
    # Third-party wheels only from the image's hashed lock (test_supply_chain.py checks the lock).
    assert f"--require-hashes --no-deps --only-binary :all: -r requirements/{service.name}.txt" in install
    for distribution in ("./contracts", "./runtime", f"./services/{service.folder}"):
        assert distribution in install


def test_run_stage_is_slim_non_root_and_healthy(service: ServiceInCode) -> None:
    final = stages(service.dockerfile)[-1]
    values = {i: v for i, v in final}
    assert [v for i, v in final if i == "COPY"] == ["--from=build /opt/callstream /opt/callstream"]
    user = values["USER"].split(":")[0]
    assert user not in ("0", "root"), "the service must not run as root"
    env = env_pairs(final)
    assert env["CALLSTREAM_HOST"] == "0.0.0.0", "services bind 127.0.0.1 by default: unreachable in a container"
    assert env[service.port_variable] == str(service.port)
    assert set(k for k in env if k.startswith("CALLSTREAM_")) <= ALL_VARIABLES
    assert values["EXPOSE"] == str(service.port)
    assert "/health/live" in values["HEALTHCHECK"]
    assert service.port_variable in values["HEALTHCHECK"]


def test_entry_point_is_pid_1_in_exec_form(service: ServiceInCode) -> None:
    values = {i: v for i, v in stages(service.dockerfile)[-1]}
    # Exec form (a JSON array) runs the entry point itself as PID 1, so SIGTERM reaches it.
    assert json.loads(values["ENTRYPOINT"]) == [service.script]
    assert json.loads(values["CMD"]) == ["serve"]


def test_build_context_sends_only_this_service(service: ServiceInCode) -> None:
    ignore = Path(f"{service.dockerfile}.dockerignore").read_text().splitlines()
    kept = {line.removeprefix("!") for line in ignore if line.startswith("!")}
    assert "**" in ignore, "everything else is excluded"
    assert f"services/{service.folder}/src/**" in kept
    others = {s.folder for s in SERVICES} - {service.folder}
    assert not any(line.startswith(f"services/{o}/") for line in kept for o in others)
