"""The dashboards and alert rules in deploy/observability/ read only metrics the services serve.

Every metric name in every panel query and every rule expression must appear in the ``/metrics``
of a real service process (a name missing fails the test), and the rule files must pass
``promtool check rules`` (skipped, with one line, where promtool is not installed)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Stack, eventually

pytestmark = pytest.mark.e2e

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
DASHBOARDS = sorted((OBSERVABILITY / "dashboards").glob("*.json"))
RULE_FILES = sorted((OBSERVABILITY / "rules").glob("*.yaml"))
SERVICES = ("gateway", "normalizer", "linker", "scheduler")

# Words of PromQL that look like metric names but are not.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "inf", "nan", "start", "end", "atan2",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z$_]+")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, roughly: what is left once strings, label
    matchers, ranges, grouping lists and offsets are taken out, minus functions (a name followed by
    ``(``), keywords and numbers."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    return {m.group(1) for m in _IDENT.finditer(text) if not m.group(2) and m.group(1).lower() not in _KEYWORDS}


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) (rate(callstream_http_request_duration_seconds_bucket"
        '{service="ingest-gateway", route=~"/v1/.*"}[$__rate_interval])))'
        " / on (service) group_left max without (instance) (callstream_worker_up offset 5m) > bool 0.5"
        ' and increase(callstream_x_total[1h] offset 1d) unless absent(callstream_y{a="b(c)"})'
    )
    assert metric_names(expr) == {
        "callstream_http_request_duration_seconds_bucket",
        "callstream_worker_up",
        "callstream_x_total",
        "callstream_y",
    }


def dashboard_exprs() -> list[tuple[str, str]]:
    """Every query of every panel (``targets[].expr``) and of every query variable."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append((where, value))
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            walk(panel, f"{path.name}: {panel.get('title')}")
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable.get("query")
                query = query.get("query") if isinstance(query, dict) else query
                found.append((f"{path.name}: ${variable['name']}", str(query)))
    return found


def rule_exprs() -> list[tuple[str, str]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def served_names(exposition: str) -> set[str]:
    """Every name a query may use for the families in one ``/metrics`` answer: the sample names,
    and for a family without samples yet (a labelled series never set), its ``_total`` or
    ``_bucket``/``_sum``/``_count`` names as Prometheus would store them."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_dashboards_and_the_prometheus_rule_are_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("observability_generate", OBSERVABILITY / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, text in script.render().items():
        path = OBSERVABILITY / "dashboards" / f"{name}.json"
        assert path.read_text() == text, f"{path.name} is stale: run deploy/observability/generate.py"
    rule = OBSERVABILITY / "k8s" / "prometheus-rule.yaml"
    assert rule.read_text() == script.prometheus_rule(), f"{rule.name} is stale: run deploy/observability/generate.py"


def test_dashboards_and_rules_exist() -> None:
    concerns = {path.stem for path in DASHBOARDS}
    assert {"intake", "pipeline", "syncs", "linker", "workers"} <= concerns
    alerts = {name.split(": ")[1] for name, _ in rule_exprs()}
    assert len(alerts) >= 8
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    annotations = rule.get("annotations", {})
                    assert {"summary", "description", "runbook"} <= annotations.keys(), rule["alert"]


async def test_every_metric_a_panel_or_rule_reads_is_served(stack: Stack) -> None:
    async def exposition(client: httpx.AsyncClient, service: str) -> str:
        r = await client.get(f"{stack.url(service)}/metrics")
        r.raise_for_status()
        return r.text

    async with httpx.AsyncClient(timeout=10.0) as client:
        # The backlog and table gauges are set by workers that start with the service: wait for
        # each service's first read, so a panel on them is checked against a real answer.
        for service in ("gateway", "normalizer", "scheduler"):

            async def collected(service: str = service) -> bool:
                return "callstream_backlog_collected_timestamp_seconds{" in await exposition(client, service)

            await eventually(collected, timeout=20.0)
        texts = await asyncio.gather(*(exposition(client, s) for s in SERVICES))
    served = set().union(*(served_names(t) for t in texts))
    used = [(where, name) for where, expr in dashboard_exprs() + rule_exprs() for name in metric_names(expr)]
    assert used, "no query found in deploy/observability/"
    missing = sorted({f"{name} ({where})" for where, name in used if name not in served})
    assert not missing, "metrics no service serves:\n" + "\n".join(missing)


def test_rule_files_and_panel_queries_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus); rule files not validated")
    assert RULE_FILES
    # Each panel query as a recording rule, so promtool parses it too (Grafana's interval variables
    # are given a value first).
    panels = {
        "groups": [
            {
                "name": "panels",
                "rules": [
                    {"record": f"panel:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
                    for i, (_, expr) in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    panel_rules = tmp_path / "panels.yaml"
    panel_rules.write_text(yaml.safe_dump(panels))
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, RULE_FILES), str(panel_rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
