"""Integration health as metrics, none of it on the webhook path: OAuth refreshes by outcome
(counted where they happen, a few per hour), integrations by status and the ones that need a
person to connect them again (read from the integrations table every few seconds by the
``integration-gauges`` worker), and the pull consumer's lag and dead letters.

The per-integration series list only integrations in ``reauth_required``, so their number follows
the incidents, not the number of integrations. Every replica reports the same table: dashboards and
alerts take ``max``.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import Counter, Gauge

from callstream.contracts import GATEWAY_PULL_CONSUMER, dlq_subject
from callstream.runtime import ServiceRuntime, SnapshotGauge, backlog_worker, get_logger, periodic

log = get_logger(__name__)

GAUGE_SECONDS = 15.0
QUERY_TIMEOUT_SECONDS = 5.0

TOKEN_REFRESHES = Counter(
    "callstream_gateway_token_refreshes_total",
    "OAuth token refreshes by provider and outcome: refreshed; refused (the provider said invalid_grant,"
    " the integration is now reauth_required); failed (token endpoint down or erring, retried later)",
    ["provider", "outcome"],
)
for _provider in ("fathom", "gong"):
    for _outcome in ("refreshed", "refused", "failed"):
        TOKEN_REFRESHES.labels(_provider, _outcome)  # the series exist at 0, so rate() sees the first one

# Per provider request of a pull run (a few a second at most, paced): never on the webhook path.
PROVIDER_RESPONSES = Counter(
    "callstream_gateway_pull_provider_responses_total",
    "Provider API answers to pull requests, by provider and status (2xx, 3xx, 4xx, 429, 5xx, or error when"
    " no answer came: unreachable, timeout, connection dropped)",
    ["provider", "status"],
)
QUOTA_LEFT = Gauge(
    "callstream_gateway_pull_quota_left",
    "Requests left today (UTC) under a provider account's daily quota, as of the last request counted",
    ["account"],
)


def status_class(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


INTEGRATIONS = SnapshotGauge(
    "callstream_gateway_integrations",
    "Integrations by provider and status (active, disabled, reauth_required)",
    ["provider", "status"],
)
REAUTH_REQUIRED = SnapshotGauge(
    "callstream_gateway_integration_reauth_required",
    "1 for each integration whose credentials the provider refused: someone must connect it again",
    ["integration_id", "workspace_id", "provider"],
)

_BY_STATUS = "select provider, status, count(*) as n from integrations group by 1, 2"
_REAUTH = "select id, workspace_id, provider from integrations where status = 'reauth_required'"
# The database away or not migrated yet: readiness says so; the gauges keep their last read.
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def read_integrations(pool: asyncpg.Pool) -> None:
    async with pool.acquire(timeout=QUERY_TIMEOUT_SECONDS) as conn:
        by_status = await conn.fetch(_BY_STATUS, timeout=QUERY_TIMEOUT_SECONDS)
        reauth = await conn.fetch(_REAUTH, timeout=QUERY_TIMEOUT_SECONDS)
    INTEGRATIONS.replace({(r["provider"], r["status"]): r["n"] for r in by_status})
    REAUTH_REQUIRED.replace({(str(r["id"]), r["workspace_id"], r["provider"]): 1 for r in reauth})


async def _collect(runtime: ServiceRuntime) -> None:
    try:
        await read_integrations(runtime.db)
    except _TRANSIENT as exc:
        log.debug("integration gauges not read this time", error=type(exc).__name__)


def add_gauge_workers(runtime: ServiceRuntime) -> None:
    runtime.add_worker(
        "backlog",
        backlog_worker((GATEWAY_PULL_CONSUMER,), (dlq_subject(GATEWAY_PULL_CONSUMER.durable),)),
        critical=False,
    )
    runtime.add_worker("integration-gauges", periodic(_collect, GAUGE_SECONDS), critical=False)
