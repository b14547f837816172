"""deploy/observability on Kubernetes and compose: the ServiceMonitor finds every service's metrics
port, the PrometheusRule carries the rule file's groups unchanged, every dashboard is a ConfigMap
for Grafana's sidecar, and the compose profile mounts the same files."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import yaml
from deploy_checks import COMPOSE_FILE, DEPLOY, SERVICES, clean_env, compose_required_variables, render, run, tool

OBSERVABILITY = DEPLOY / "observability"


def monitoring() -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(OBSERVABILITY))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_service_monitor_selects_every_service_on_its_http_port() -> None:
    (monitor,) = [d for d in monitoring() if d["kind"] == "ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    selected = [
        d
        for d in render("base")
        if d["kind"] == "Service" and selector.items() <= d["metadata"].get("labels", {}).items()
    ]
    assert {d["metadata"]["name"] for d in selected} == {f"callstream-{s.name}" for s in SERVICES}
    for service in selected:
        assert ports <= {p["name"] for p in service["spec"]["ports"]}, service["metadata"]["name"]


def test_prometheus_rule_has_the_rule_files_groups() -> None:
    (rule,) = [d for d in monitoring() if d["kind"] == "PrometheusRule"]
    groups = yaml.safe_load((OBSERVABILITY / "rules" / "callstream.yaml").read_text())["groups"]
    assert rule["spec"]["groups"] == groups


def test_every_dashboard_is_a_config_map_for_the_grafana_sidecar() -> None:
    maps = [d for d in monitoring() if d["kind"] == "ConfigMap"]
    files = {p.name: p.read_text() for p in (OBSERVABILITY / "dashboards").glob("*.json")}
    carried = {}
    for config_map in maps:
        kubernetes_validate.validate(config_map, "1.31.0", strict=True)
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        carried.update(config_map["data"])
    assert carried == files
    for text in carried.values():
        assert json.loads(text)["uid"].startswith("callstream-")


def test_compose_profile_loads_the_rules_and_dashboards() -> None:
    env = clean_env(**{name: f"placeholder-{name.lower()}" for name in compose_required_variables()})
    result = run(
        tool("docker-compose"),
        "-f",
        str(COMPOSE_FILE),
        "--profile",
        "observability",
        "config",
        "--format",
        "json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    mounts = {s: {v["target"]: v["source"] for v in services[s]["volumes"]} for s in ("prometheus", "grafana")}
    assert mounts["prometheus"]["/etc/prometheus/callstream"] == str(OBSERVABILITY)
    assert mounts["grafana"]["/var/lib/grafana/dashboards/callstream"] == str(OBSERVABILITY / "dashboards")
    assert mounts["grafana"]["/etc/grafana/provisioning"] == str(OBSERVABILITY / "grafana" / "provisioning")
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yaml"]
    targets = set(config["scrape_configs"][0]["static_configs"][0]["targets"])
    assert targets == {f"{s.name}:{s.port}" for s in SERVICES}
    for server in ("prometheus", "grafana"):
        assert services[server]["profiles"] == ["observability"]
        assert all(p["host_ip"] == "127.0.0.1" for p in services[server]["ports"])
