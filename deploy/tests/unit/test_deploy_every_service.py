"""Every service in the code has, in every overlay, its image, Deployment, Service, ServiceAccount,
PodDisruptionBudget, probes on the health endpoints, resources, a step in the setup Job (when it keeps
data: tables or streams), and exactly the configuration keys its Settings declare (the required ones present, none unknown, secrets only
from Secrets). The services and their keys are read from the code, never typed here."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_checks import DEPLOY, OVERLAYS, SERVICES, ServiceInCode, find, find_prefixed, render

AUTOSCALED = {"gateway", "linker"}  # the HTTP APIs scale on CPU; the workers by replicas


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = render(f"overlays/{request.param}")
    return rendered


def config_keys(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """Variable -> where it comes from (configmap, secret, value) for one container."""
    sources: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        assert "configMapRef" in ref, "only the ConfigMap is loaded whole; secrets are named one by one"
        config = find(docs, "ConfigMap", ref["configMapRef"]["name"])
        assert config is not None, f"envFrom names a ConfigMap that is not rendered: {ref}"
        sources.update(dict.fromkeys(config["data"], "configmap"))
    for var in container.get("env", []):
        if "value" in var:
            sources[var["name"]] = "value"
        else:
            sources[var["name"]] = "secret" if "secretKeyRef" in var["valueFrom"] else "other"
    return sources


def check_config_keys(where: str, service: ServiceInCode, sources: dict[str, str]) -> None:
    unknown = set(sources) - service.variables
    assert not unknown, f"{where}: {sorted(unknown)} are not settings of {service.script}"
    missing = service.required - set(sources)
    assert not missing, f"{where}: {service.script} requires {sorted(missing)}"
    for var in service.secrets & set(sources):
        assert sources[var] == "secret", f"{where}: {var} is a secret and must come from a secretKeyRef"
    assert sources.get("CALLSTREAM_HOST") == "configmap"


def test_every_deployment_is_a_service_in_the_code(docs: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {f"callstream-{s.name}" for s in SERVICES}


def test_service_has_its_deployment_image_and_probes(docs: list[dict[str, Any]], service: ServiceInCode) -> None:
    name = f"callstream-{service.name}"
    deployment = find(docs, "Deployment", name)
    assert deployment is not None, f"no Deployment {name}"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1] == service.image
    assert container["args"] == ["serve"]
    assert {"name": "http", "containerPort": service.port, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: resources.{kind}"
    assert pod["serviceAccountName"] == name
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > 20, "longer than the service's own shutdown grace"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_service_gets_exactly_its_config_keys(docs: list[dict[str, Any]], service: ServiceInCode) -> None:
    deployment = find(docs, "Deployment", f"callstream-{service.name}")
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    sources = config_keys(docs, container)
    check_config_keys(f"Deployment callstream-{service.name}", service, sources)
    if not service.keeps_data:
        # Nor the database's or the broker's secrets (the ConfigMap's broker address is not one).
        assert not {"CALLSTREAM_DATABASE_URL", "CALLSTREAM_NATS_USER", "CALLSTREAM_NATS_PASSWORD"} & set(sources)
    port = next(v for v in container["env"] if v["name"] == service.port_variable)
    assert port["value"] == str(service.port)


def test_service_has_its_service_account_service_and_budget(docs: list[dict[str, Any]], service: ServiceInCode) -> None:
    name = f"callstream-{service.name}"
    deployment = find(docs, "Deployment", name)
    assert deployment is not None
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert find(docs, "ServiceAccount", name) is not None
    svc = find(docs, "Service", name)
    assert svc is not None
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["ports"][0]["port"] == service.port
    assert svc["spec"]["selector"].items() <= labels.items()
    budget = find(docs, "PodDisruptionBudget", name)
    assert budget is not None
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_http_apis_autoscale(docs: list[dict[str, Any]], service: ServiceInCode) -> None:
    hpa = find(docs, "HorizontalPodAutoscaler", f"callstream-{service.name}")
    if service.name not in AUTOSCALED:
        assert hpa is None
        return
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"callstream-{service.name}",
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    deployment = find(docs, "Deployment", f"callstream-{service.name}")
    assert deployment is not None
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_setup_job_sets_up_every_service(docs: list[dict[str, Any]], service: ServiceInCode) -> None:
    job = find(docs, "Job", "callstream-setup")
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    steps = [*pod.get("initContainers", []), *pod["containers"]]
    mine = [c for c in steps if c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1] == service.image]
    if not service.keeps_data:
        # No tables and no streams (the console): nothing to set up, and its image has no `setup`.
        assert mine == [], f"{service.image} keeps no data: it has no setup step"
        return
    assert len(mine) == 1, f"the setup Job needs one step with {service.image}"
    assert mine[0]["args"] == ["setup"]
    check_config_keys(f"setup step {mine[0]['name']}", service, config_keys(docs, mine[0]))


def test_readme_documents_every_variable(service: ServiceInCode) -> None:
    readme = (DEPLOY / "README.md").read_text()
    undocumented = sorted(v for v in service.variables if v not in readme)
    assert not undocumented, f"deploy/README.md does not describe {undocumented} ({service.script})"


def test_shared_config_holds_only_keys_every_service_reads(docs: list[dict[str, Any]]) -> None:
    config = find_prefixed(docs, "ConfigMap", "callstream-config")
    common = set.intersection(*(s.variables for s in SERVICES))
    assert set(config["data"]) <= common
