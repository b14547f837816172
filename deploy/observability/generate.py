"""Writes the Grafana dashboards in ``dashboards/`` (one per concern) and the Kubernetes
``PrometheusRule`` in ``k8s/`` (the groups of ``rules/callstream.yaml``). Edit the panels here or
the rules there, then run ``.venv/bin/python deploy/observability/generate.py``;
``tests/e2e/test_observability.py`` fails when the files differ from what this writes, and when a
query reads a metric no service serves.

Every service replica reports the same backlog and table gauges, so those panels take ``max``
over instances; counters are summed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RULES = HERE / "rules" / "callstream.yaml"
PROMETHEUS_RULE = HERE / "k8s" / "prometheus-rule.yaml"
RATE = "$__rate_interval"
WEBHOOK = 'service="ingest-gateway", route=~"/v1/webhooks/.*"'


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def panel(
    title: str,
    *targets: tuple[str, str],
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    width: int = 12,
) -> dict[str, Any]:
    refs = "ABCDEFGH"
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [target(expr, legend, refs[i]) for i, (expr, legend) in enumerate(targets)],
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
    }


def table(title: str, expr: str, legend: str, description: str = "") -> dict[str, Any]:
    p = panel(title, (expr, legend), kind="table", description=description)
    p["targets"][0].update(format="table", instant=True)
    return p


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = 0
    for number, p in enumerate(panels, 1):  # two columns, left to right then down
        width = p["gridPos"]["w"]
        if x + width > 24:
            x, y = 0, y + 8
        p["gridPos"].update(x=x, y=y)
        p["id"] = number
        x += width
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["callstream"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["callstream"], "asDropdown": True, "title": "callstream"}],
        "panels": panels,
    }


def intake() -> dict[str, Any]:
    return dashboard(
        "callstream-intake",
        "callstream / intake",
        "Fathom webhooks at the ingest-gateway: rate, latency, answers by status, integrations.",
        [
            panel(
                "Webhooks accepted",
                (f'sum(rate(callstream_http_requests_total{{{WEBHOOK}, status="202"}}[{RATE}]))', "accepted"),
                unit="reqps",
            ),
            panel(
                "Webhook latency",
                *(
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(callstream_http_request_duration_seconds_bucket"
                        f"{{{WEBHOOK}}}[{RATE}])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                unit="s",
                description="Request to the end of the answer, which comes after JetStream's ack of the raw call.",
            ),
            panel(
                "Webhook 4xx by reason",
                (
                    f'sum by (status) (rate(callstream_http_requests_total{{{WEBHOOK}, status=~"4.."}}[{RATE}]))',
                    "{{status}}",
                ),
                unit="reqps",
                description=(
                    "Each status has one reason on this route: 400 malformed headers or body, 401 signature "
                    "or timestamp refused, 404 unknown or disabled integration, 413 body over the limit. "
                    "A 401 burst for one integration is usually a rotated secret; see the gateway log "
                    "'webhook rejected' with the integration id."
                ),
            ),
            panel(
                "Since the last webhook, by integration",
                (
                    "time() - max by (integration_id) (callstream_gateway_webhook_last_accepted_timestamp_seconds)",
                    "{{integration_id}}",
                ),
                unit="s",
                description="Integrations that had a webhook accepted since the gateway started.",
            ),
            panel(
                "Webhook 5xx",
                (
                    f'sum by (status) (rate(callstream_http_requests_total{{{WEBHOOK}, status=~"5.."}}[{RATE}]))',
                    "{{status}}",
                ),
                (
                    f'sum(rate(callstream_http_requests_total{{{WEBHOOK}, status=~"5.."}}[{RATE}]))'
                    f" / sum(rate(callstream_http_requests_total{{{WEBHOOK}}}[{RATE}]))",
                    "share of all",
                ),
                unit="short",
                description=(
                    "503 broker_unavailable (JetStream did not confirm; Svix retries) or not_ready (the "
                    "webhook-secret cache is not loaded yet). A 5xx is never a lost webhook: the sender retries."
                ),
            ),
            panel(
                "Gateway HTTP answers by route",
                (
                    'sum by (route, status) (rate(callstream_http_requests_total{service="ingest-gateway"}'
                    f"[{RATE}]))",
                    "{{route}} {{status}}",
                ),
                unit="reqps",
            ),
            panel(
                "Integrations by status",
                ("max by (provider, status) (callstream_gateway_integrations)", "{{provider}} {{status}}"),
            ),
            panel(
                "Body limit and broker max payload",
                ("max(callstream_gateway_body_limit_bytes)", "body limit"),
                ("max(callstream_gateway_broker_max_payload_bytes)", "NATS max_payload"),
                unit="bytes",
            ),
            table(
                "Integrations waiting for reauthorisation",
                "max by (integration_id, workspace_id, provider) (callstream_gateway_integration_reauth_required)",
                "{{integration_id}}",
                description="The provider refused the refresh token: someone in the workspace must connect again.",
            ),
        ],
    )


def pipeline() -> dict[str, Any]:
    return dashboard(
        "callstream-pipeline",
        "callstream / pipeline",
        "JetStream consumers, the normalizer, its outbox and the dead-letter queue.",
        [
            panel(
                "Consumer lag (not yet delivered)",
                ("max by (stream, consumer) (callstream_jetstream_consumer_pending)", "{{consumer}}"),
                description="num_pending of each durable consumer, read every 5 s by the service that owns it.",
            ),
            panel(
                "Delivered, not yet acknowledged",
                ("max by (consumer) (callstream_jetstream_consumer_ack_pending)", "{{consumer}} in flight"),
                ("max by (consumer) (callstream_jetstream_consumer_redelivered)", "{{consumer}} redelivered"),
            ),
            panel(
                "Raw calls handled by outcome",
                (f"sum by (outcome) (rate(callstream_normalizer_raw_calls_total[{RATE}]))", "{{outcome}}"),
                unit="ops",
            ),
            panel(
                "Raw calls per stored batch",
                (
                    f"histogram_quantile(0.5, sum by (le) (rate(callstream_normalizer_batch_messages_bucket[{RATE}])))",
                    "p50",
                ),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(callstream_normalizer_batch_messages_bucket[{RATE}])))",
                    "p99",
                ),
                description="Full batches (CALLSTREAM_NORMALIZER_BATCH_SIZE) mean the normalizer is behind.",
            ),
            panel(
                "Batch store time",
                (
                    f"histogram_quantile(0.5, sum by (le) (rate(callstream_normalizer_batch_store_seconds_bucket[{RATE}])))",
                    "p50",
                ),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(callstream_normalizer_batch_store_seconds_bucket[{RATE}])))",
                    "p99",
                ),
                unit="s",
                description="One batch's transaction, from taking a connection to its commit.",
            ),
            panel(
                "MessageUpserted published",
                (f"sum(rate(callstream_normalizer_events_published_total[{RATE}]))", "published"),
                (f"sum(rate(callstream_normalizer_events_dead_lettered_total[{RATE}]))", "dead-lettered"),
                unit="ops",
            ),
            panel(
                "Outbox backlog",
                ("max(callstream_normalizer_outbox_unpublished)", "rows not published"),
                description="Stored messages whose event is not on MESSAGES yet.",
            ),
            panel(
                "Oldest unpublished outbox row",
                ("max(callstream_normalizer_outbox_oldest_unpublished_age_seconds)", "age"),
                unit="s",
            ),
            panel(
                "Dead letters by subject",
                ("max by (subject) (callstream_dlq_messages)", "{{subject}}"),
                description="Entries kept in the DLQ stream. `normalizer dlq list` shows them, `dlq redrive` retries.",
            ),
            panel(
                "Feature links by outcome",
                (f"sum by (outcome) (rate(callstream_normalizer_feature_links_total[{RATE}]))", "{{outcome}}"),
                unit="ops",
            ),
        ],
    )


def syncs() -> dict[str, Any]:
    return dashboard(
        "callstream-syncs",
        "callstream / syncs",
        "Pull runs: the scheduler's view, the gateway's provider requests, limits and breakers.",
        [
            panel(
                "Integrations by sync status",
                ("max by (provider, status) (callstream_scheduler_integrations)", "{{provider}} {{status}}"),
            ),
            panel(
                "Runs queued and running",
                ("max by (provider, status) (callstream_scheduler_active_runs)", "{{provider}} {{status}}"),
            ),
            panel(
                "Runs finished in the last hour",
                ("max by (provider, status) (callstream_scheduler_runs_finished_last_hour)", "{{provider}} {{status}}"),
            ),
            panel(
                "Provider requests by status",
                (
                    f"sum by (provider, status) (rate(callstream_gateway_pull_provider_responses_total[{RATE}]))",
                    "{{provider}} {{status}}",
                ),
                unit="reqps",
            ),
            panel(
                "429 answers",
                (
                    f'sum by (provider) (rate(callstream_gateway_pull_provider_responses_total{{status="429"}}[{RATE}]))',
                    "{{provider}}",
                ),
                unit="reqps",
                description="The provider asked to slow down; the pull waits Retry-After or releases the run.",
            ),
            panel(
                "Daily quota left",
                ("min by (account) (callstream_gateway_pull_quota_left)", "{{account}}"),
                description="Requests left today (UTC) per provider account (a digest, no secret).",
            ),
            panel(
                "Runs released for later, by reason",
                (
                    f"sum by (provider, reason) (rate(callstream_gateway_pull_runs_released_total[{RATE}]))",
                    "{{provider}} {{reason}}",
                ),
                unit="ops",
            ),
            panel(
                "Provider host breakers",
                ("max by (host) (callstream_gateway_pull_breaker_state)", "{{host}}"),
                (f"sum by (host) (increase(callstream_gateway_pull_breaker_opened_total[{RATE}]))", "{{host}} opened"),
                description="0 closed, 1 half open, 2 open.",
            ),
            panel(
                "Pulled calls skipped by reason",
                (
                    f"sum by (provider, reason) (rate(callstream_gateway_pull_calls_skipped_total[{RATE}]))",
                    "{{provider}} {{reason}}",
                ),
                unit="ops",
            ),
            panel(
                "OAuth token refreshes",
                (
                    f"sum by (provider, outcome) (increase(callstream_gateway_token_refreshes_total[{RATE}]))",
                    "{{provider}} {{outcome}}",
                ),
            ),
            table(
                "Failing integrations",
                "max by (integration_id, workspace_id, provider) (callstream_scheduler_integration_consecutive_failures)",
                "{{integration_id}}",
                description="Failed runs in a row. `GET /integrations/{id}/syncs` on the scheduler says why.",
            ),
            table(
                "Runs that have not moved",
                "topk(20, max by (integration_id, workspace_id, provider, status) (callstream_scheduler_run_idle_seconds))",
                "{{integration_id}}",
                description="Seconds since each queued or running run last moved (waits it announced excluded).",
            ),
            panel(
                "Pull and sync-events consumers",
                (
                    'max by (consumer) (callstream_jetstream_consumer_pending{consumer=~"gateway-pull|scheduler"})',
                    "{{consumer}} pending",
                ),
                (
                    'max by (consumer) (callstream_jetstream_consumer_ack_pending{consumer=~"gateway-pull|scheduler"})',
                    "{{consumer}} in flight",
                ),
            ),
        ],
    )


def linker() -> dict[str, Any]:
    svc = 'service="linker"'
    return dashboard(
        "callstream-linker",
        "callstream / linker",
        "Reads of links and messages: rate, latency, the hot-link cache.",
        [
            panel(
                "Answers by route and status",
                (
                    f"sum by (route, status) (rate(callstream_http_requests_total{{{svc}}}[{RATE}]))",
                    "{{route}} {{status}}",
                ),
                unit="reqps",
            ),
            panel(
                "Latency by route",
                *(
                    (
                        f"histogram_quantile({q}, sum by (le, route) (rate(callstream_http_request_duration_seconds_bucket"
                        f"{{{svc}}}[{RATE}])))",
                        f"{{{{route}}}} p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                unit="s",
            ),
            panel(
                "Link cache hit ratio",
                (
                    f"sum(rate(callstream_linker_links_from_memory_total[{RATE}]))"
                    f' / sum(rate(callstream_http_requests_total{{{svc}, route="/v1/links"}}[{RATE}]))',
                    "answered from memory",
                ),
                unit="percentunit",
            ),
            panel(
                "Link cache",
                ("sum by (instance) (callstream_linker_link_cache_entries)", "{{instance}} entries"),
            ),
            panel(
                "Link cache feed live",
                ("min by (instance) (callstream_linker_link_cache_live)", "{{instance}}"),
                description="0 while the MessageUpserted feed is not live: links are then read from the database.",
            ),
            panel(
                "5xx share",
                (
                    f'sum(rate(callstream_http_requests_total{{{svc}, status=~"5.."}}[{RATE}]))'
                    f" / sum(rate(callstream_http_requests_total{{{svc}}}[{RATE}]))",
                    "5xx",
                ),
                unit="percentunit",
            ),
        ],
    )


def workers() -> dict[str, Any]:
    return dashboard(
        "callstream-workers",
        "callstream / workers",
        "Background workers of every service under the runtime supervisor.",
        [
            panel(
                "Workers up",
                ("min by (service, worker) (callstream_worker_up)", "{{service}} {{worker}}"),
                kind="state-timeline",
                description="1 running, 0 waiting to be restarted after a failure.",
                width=24,
            ),
            panel(
                "Worker restarts",
                (
                    f"sum by (service, worker) (increase(callstream_worker_restarts_total[{RATE}]))",
                    "{{service}} {{worker}}",
                ),
            ),
            panel(
                "Age of the backlog figures",
                ("time() - max by (service) (callstream_backlog_collected_timestamp_seconds)", "{{service}}"),
                unit="s",
                description="Seconds since the consumer and DLQ gauges were last read from JetStream.",
            ),
            panel(
                "HTTP answers by service",
                (f"sum by (service) (rate(callstream_http_requests_total[{RATE}]))", "{{service}}"),
                unit="reqps",
            ),
            panel(
                "Workers down now",
                ("count by (service) (callstream_worker_up == 0)", "{{service}}"),
            ),
        ],
    )


DASHBOARDS = {"intake": intake, "pipeline": pipeline, "syncs": syncs, "linker": linker, "workers": workers}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def prometheus_rule() -> str:
    """The rule file as a Prometheus Operator ``PrometheusRule``: its groups, indented, verbatim."""
    rules = RULES.read_text()
    groups = rules[rules.index("groups:") :]
    return (
        "# Generated by deploy/observability/generate.py from rules/callstream.yaml: edit that file.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: callstream\n"
        "spec:\n" + "".join(f"  {line}" if line.strip() else line for line in groups.splitlines(keepends=True))
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / f"{name}.json").write_text(text)
        sys.stdout.write(f"wrote {OUT / name}.json\n")
    PROMETHEUS_RULE.write_text(prometheus_rule())
    sys.stdout.write(f"wrote {PROMETHEUS_RULE}\n")


if __name__ == "__main__":
    main()
