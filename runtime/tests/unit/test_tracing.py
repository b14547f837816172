"""Tracing is configured by the OTEL_* variables only: with no endpoint no SDK is installed (the
API's no-op tracer, ``tracing.on`` False); with one, the SDK exports under the service's name.
Each case runs in a fresh interpreter, as a service process would: a tracer provider can be set
once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from opentelemetry import trace
from callstream.runtime import configure_logging, get_logger, tracing
on = tracing.configure("probe-service")
configure_logging("probe-service", "info", "json")
provider = trace.get_tracer_provider()
with tracing.tracer.start_as_current_span("probe") as span:
    get_logger("probe").info("inside a span")
    recording = span.is_recording()
resource = getattr(provider, "resource", None)
print(json.dumps({
    "on": on,
    "provider": type(provider).__name__,
    "recording": recording,
    "service_name": resource.attributes.get("service.name") if resource else None,
}), flush=True)
tracing.shutdown()
"""


def _probe(**env: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # An endpoint nobody listens on: spans are dropped quickly at shutdown, nothing waits for them.
    clean.update(OTEL_EXPORTER_OTLP_TIMEOUT="1", OTEL_BSP_EXPORT_TIMEOUT="1000", **env)
    done = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return json.loads(done.stdout.strip().splitlines()[-1]), logs


def test_no_endpoint_installs_no_sdk_and_logs_carry_no_trace_id() -> None:
    result, logs = _probe()
    assert result == {"on": False, "provider": "ProxyTracerProvider", "recording": False, "service_name": None}
    line = next(entry for entry in logs if entry["event"] == "inside a span")
    assert "trace_id" not in line


@pytest.mark.parametrize("switch_off", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_an_endpoint_with_the_sdk_switched_off_installs_none(switch_off: dict[str, str]) -> None:
    result, _ = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **switch_off)
    assert result["on"] is False
    assert result["provider"] == "ProxyTracerProvider"


def test_an_endpoint_installs_the_sdk_under_the_services_name_and_logs_name_the_trace() -> None:
    result, logs = _probe(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces")
    assert result == {"on": True, "provider": "TracerProvider", "recording": True, "service_name": "probe-service"}
    line = next(entry for entry in logs if entry["event"] == "inside a span")
    assert len(str(line["trace_id"])) == 32
    assert len(str(line["span_id"])) == 16


def test_otel_service_name_wins_over_the_services_own() -> None:
    result, _ = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SERVICE_NAME="gateway-eu-1")
    assert result["service_name"] == "gateway-eu-1"


def test_an_unsampled_trace_installs_the_sdk_but_records_nothing() -> None:
    result, logs = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_TRACES_SAMPLER="always_off")
    assert (result["on"], result["recording"]) == (True, False)
    line = next(entry for entry in logs if entry["event"] == "inside a span")
    assert "trace_id" not in line
