"""The images' supply chain (issue #20, item 4; deploy/README.md, "Supply chain"), checked without the
network or a Docker engine:

- each image's hashed lock names exactly the third-party distributions its install needs (worked out
  from the installed metadata of contracts, runtime and the service), at exactly constraints.txt's
  versions, each with its hashes, so the locks cannot drift from constraints.txt;
- the Dockerfiles install only from those locks, with --require-hashes;
- every base and third-party image is pinned by digest, and the NATS chart by an exact version."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml
from deploy_checks import COMPOSE_FILE, DEPLOY, K8S, REPO, SERVICES, ServiceInCode
from dockerfile_parse import DockerfileParser
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCKS = DEPLOY / "docker" / "requirements"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\b")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
CHART_REPO = "https://nats-io.github.io/k8s/helm/charts/"


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a `uv pip compile --generate-hashes` file."""
    text = path.read_text().replace("\\\n", " ")
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *_ = line.split(" --hash=", 1)
        name, sep, version = requirement.strip().partition("==")
        assert sep, f"{path.name}: not an exact pin: {line[:80]}"
        assert canonicalize_name(name) not in entries, f"{path.name}: {name} twice"
        entries[canonicalize_name(name)] = (version.strip(), HASH.findall(line))
    return entries


def needed(roots: list[str]) -> set[str]:
    """Every distribution installing ``roots`` pulls in on this platform (the images' Python and OS
    family), walking the installed metadata with extras and markers, as pip's resolver does."""
    environment = default_environment()
    seen: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        for spec in importlib.metadata.distribution(name).requires or []:
            dependency = Requirement(spec)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra}) for extra in {"", *seen[name]}
            )
            if wanted:
                todo.append(dependency)
    return set(seen)


def local_distribution(folder: Path) -> str:
    return str(tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"])


LOCAL = {
    canonicalize_name(local_distribution(REPO / f))
    for f in ["contracts", "runtime", *(f"services/{s.folder}" for s in SERVICES)]
}


def test_each_image_lock_is_exactly_what_its_service_installs_at_the_constraints_versions(
    service: ServiceInCode,
) -> None:
    lock = parse_lock(LOCKS / f"{service.name}.txt")
    pins = constraints()
    expected = needed([local_distribution(REPO / "services" / service.folder)]) - LOCAL
    assert set(lock) == expected, (
        f"{service.name}.txt: missing {sorted(expected - set(lock))}, extra {sorted(set(lock) - expected)} "
        "(./dev lock-images rewrites the locks)"
    )
    wrong = {name: (version, pins.get(name)) for name, (version, _) in lock.items() if pins.get(name) != version}
    assert not wrong, f"lock version != constraints.txt: {wrong} (./dev lock-images)"
    unhashed = [name for name, (_, hashes) in lock.items() if not hashes]
    assert not unhashed, f"no --hash for {unhashed}"


def test_the_build_backend_lock_holds_every_backend_at_the_constraints_versions() -> None:
    """The backends are not installed in the dev venv (pip builds in isolation there), so their
    dependencies cannot be walked here: the lock must name each backend, at constraints.txt's pins."""
    backends = {
        canonicalize_name(Requirement(req).name)
        for folder in ["contracts", "runtime", *(f"services/{s.folder}" for s in SERVICES)]
        for req in tomllib.loads((REPO / folder / "pyproject.toml").read_text())["build-system"]["requires"]
    }
    lock = parse_lock(LOCKS / "build.txt")
    assert backends <= set(lock)
    pins = constraints()
    wrong = {name: version for name, (version, hashes) in lock.items() if pins.get(name) != version or not hashes}
    assert not wrong, f"build.txt differs from constraints.txt or lacks hashes: {wrong} (./dev lock-images)"


def test_no_lock_without_an_image() -> None:
    assert {p.stem for p in LOCKS.glob("*.txt")} == {s.name for s in SERVICES} | {"build"}


def test_the_lock_check_finds_drift(tmp_path: Path) -> None:
    """The parser the tests above rely on sees a version that is not constraints.txt's and a line
    without hashes."""
    bad = tmp_path / "bad.txt"
    bad.write_text("httpx==0.0.1 \\\n    --hash=sha256:" + "a" * 64 + "\nidna==3.20\n")
    lock = parse_lock(bad)
    assert lock["httpx"][0] != constraints()["httpx"]
    assert lock["idna"] == ("3.20", [])


def test_dockerfiles_install_only_hashed_wheels_and_local_code_without_dependencies(service: ServiceInCode) -> None:
    runs = [i["value"] for i in DockerfileParser(path=str(service.dockerfile)).structure if i["instruction"] == "RUN"]
    installs = [run for run in runs if "pip install" in run or "pip wheel" in run]
    hashed = [line for line in installs if f"-r requirements/{service.name}.txt" in line]
    assert hashed, installs
    assert all("--require-hashes" in line and "--only-binary :all:" in line for line in hashed), installs
    for line in installs:
        for command in re.split(r"&&", line):
            if "pip install" in command or "pip wheel" in command:
                assert "--require-hashes" in command or "--no-deps" in command, f"resolves from an index: {command}"
                assert "--no-deps" in command, f"may pull unhashed dependencies: {command}"
                assert "--constraint" not in command
    ignore = Path(f"{service.dockerfile}.dockerignore").read_text().splitlines()
    assert f"!deploy/docker/requirements/{service.name}.txt" in ignore
    assert "!deploy/docker/requirements/build.txt" in ignore


def _image_references() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for dockerfile in sorted((DEPLOY / "docker").glob("*.Dockerfile")):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("ARG PYTHON_IMAGE="):
                found.append((dockerfile.name, line.split("=", 1)[1]))
            elif line.startswith("FROM ") and "${PYTHON_IMAGE}" not in line:
                found.append((dockerfile.name, line.split()[1]))
    for name, spec in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items():
        if "build" not in spec:  # the four callstream images are built here, from pinned inputs
            found.append((f"compose {name}", spec["image"]))
    for values in sorted((K8S / "nats").glob("values*.yaml")):
        doc = yaml.safe_load(values.read_text())
        for path in (("container",), ("natsBox", "container")):
            node = doc
            for key in path:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            image = node.get("image") if isinstance(node, dict) else None
            if image:
                found.append((f"{values.name} {'.'.join(path)}", f"{image['repository']}@{image.get('digest', '')}"))
    return found


def test_every_third_party_image_is_pinned_by_digest() -> None:
    references = _image_references()
    assert len([r for r in references if r[0].endswith(".Dockerfile")]) == len(SERVICES)
    assert any(r[0].startswith("values.yaml") for r in references)
    unpinned = [r for r in references if not DIGEST.search(r[1])]
    assert not unpinned, f"not pinned by digest: {unpinned}"


def test_the_nats_chart_is_installed_at_one_exact_version_from_its_repository() -> None:
    texts = {p: p.read_text() for p in [DEPLOY / "README.md", *sorted((K8S / "nats").glob("*.yaml"))]}
    texts[DEPLOY / "devstack" / "src" / "callstream" / "devstack" / "_nats_deploy.py"] = (
        DEPLOY / "devstack" / "src" / "callstream" / "devstack" / "_nats_deploy.py"
    ).read_text()
    versions: set[str] = set()
    commands = 0
    for path, text in texts.items():
        for command in re.findall(r"helm upgrade --install nats nats/nats[^\n]*", text):
            commands += 1
            match = re.search(r"--version (\S+)", command)
            assert match, f"{path.name}: the chart is not pinned: {command}"
            versions.add(match.group(1))
        for url in re.findall(r"helm repo add nats (\S+)", text):
            assert url == CHART_REPO, f"{path.name}: {url}"
    assert commands >= 4
    assert len(versions) == 1, f"the install commands disagree: {versions}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions.pop())


def test_the_locks_are_resolved_for_the_images_python() -> None:
    version = re.search(r'IMAGE_PYTHON = "([\d.]+)"', (REPO / "dev").read_text())
    assert version, "./dev names the images' Python for uv"
    for dockerfile in (DEPLOY / "docker").glob("*.Dockerfile"):
        assert f"ARG PYTHON_IMAGE=python:{version.group(1)}-" in dockerfile.read_text()
