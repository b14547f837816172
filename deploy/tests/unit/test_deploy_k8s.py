"""deploy/k8s: every overlay builds with kustomize and every object validates against the
Kubernetes schemas; secrets only by reference; NATS values fit the stream replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_checks import K8S, OVERLAYS, SECRET_VARIABLES, find_prefixed, render

# The oldest and the newest Kubernetes minor this repository targets.
KUBERNETES_VERSIONS = ("1.31.0", "1.35.0")
NATS_VALUES = {"dev": K8S / "nats" / "values-dev.yaml", "prod": K8S / "nats" / "values.yaml"}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"] if "template" in doc.get("spec", {}) else {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_every_object_validates_against_the_kubernetes_schema(path: str, version: str) -> None:
    docs = render(path)
    assert len(docs) > 10
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']} is invalid for {version}: {exc.message}")


def test_the_schema_check_rejects_an_invalid_object() -> None:
    """The validation can fail: an unknown field and a wrong type are both caught."""
    deployment = yaml.safe_load(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        spec:
          selector: {matchLabels: {a: b}}
          template:
            metadata: {labels: {a: b}}
            spec:
              containers: [{name: x, image: x, readinesProbe: {httpGet: {path: /health/ready, port: http}}}]
        """
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0] = {"name": "x", "image": "x", "ports": "8080"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_in_the_manifests(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created outside the repository"
    config = find_prefixed(docs, "ConfigMap", "callstream-config")
    assert not set(config["data"]) & SECRET_VARIABLES
    for doc in docs:
        for container in containers(doc):
            for var in container.get("env", []):
                if var["name"] in SECRET_VARIABLES:
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{var['name']} must come from a Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_its_namespace_and_pinned_images(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    namespace = "callstream" if overlay == "prod" else f"callstream-{overlay}"
    assert {d["metadata"].get("namespace") for d in docs} == {namespace}
    for doc in docs:
        for container in containers(doc):
            assert ":" in container["image"], container["image"]
            assert not container["image"].endswith(":latest"), container["image"]


def nats_values(overlay: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(Path(NATS_VALUES[overlay]).read_text())
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stream_replicas_fit_the_nats_servers(overlay: str) -> None:
    values = nats_values(overlay)["config"]
    servers = values["cluster"]["replicas"] if values["cluster"]["enabled"] else 1
    config = find_prefixed(render(f"overlays/{overlay}"), "ConfigMap", "callstream-config")
    replicas = int(config["data"]["CALLSTREAM_STREAM_REPLICAS"])
    assert 1 <= replicas <= servers
    assert values["jetstream"]["enabled"]
    assert values["jetstream"]["fileStore"]["enabled"]


def test_production_runs_three_nats_servers_and_r3_streams() -> None:
    values = nats_values("prod")["config"]
    assert values["cluster"] == {"enabled": True, "replicas": 3}
    assert values["jetstream"]["fileStore"]["pvc"]["enabled"]
    config = find_prefixed(render("overlays/prod"), "ConfigMap", "callstream-config")
    assert config["data"]["CALLSTREAM_STREAM_REPLICAS"] == "3"
