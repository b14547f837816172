"""Sync controls end to end (issue #18, item 2), every service a real process: a Fathom backfill's
progress streamed from the scheduler as Server-Sent Events, cancelled after its first page (the
gateway's pull stops there, the stream ends with 'cancelled'), then a "latest 5" test sync streamed
to its finish, and the integration's health card."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app

from .conftest import Stack, eventually

MEETINGS = 60


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    # The due loop and the progress reads quick; no pacing of the fake's requests.
    return {
        **service_env,
        "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "0.5",
        "CALLSTREAM_SCHEDULER_PROGRESS_POLL_SECONDS": "0.1",
        "CALLSTREAM_GATEWAY_PULL_LIMITS_ENABLED": "false",
    }


async def _events(response: httpx.Response) -> Any:
    """(event, id, data) of each Server-Sent Event, comments left out."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            if name:
                fields[name] = value.removeprefix(" ")
        elif "event" in fields:
            yield fields["event"], fields.get("id"), json.loads(fields.get("data", "null"))
            fields = {}
        else:
            fields = {}


async def _stream_until_end(
    scheduler: httpx.AsyncClient, path: str, on_progress: Any = None
) -> list[tuple[str, Any, Any]]:
    seen: list[tuple[str, Any, Any]] = []
    async with scheduler.stream("GET", path, timeout=httpx.Timeout(10.0, read=30.0)) as response:
        assert response.status_code == 200
        async for event in _events(response):
            seen.append(event)
            if event[0] == "progress" and on_progress is not None:
                await on_progress(event)
    return seen


async def test_cancel_a_backfill_mid_stream_then_test_with_the_latest_5(stack: Stack) -> None:
    fathom = FathomState(FathomConfig(seed=18, meetings=MEETINGS, span_days=30, page_size=10))
    fathom.faults.delay_seconds = 0.4  # six pages: time to cancel after the first
    async with serve_in_process(fathom_app(fathom)) as fathom_url:
        created = await stack.client("gateway").post(
            "/v1/integrations",
            json={
                "workspace_id": "controls",
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "base_url": fathom_url + "/external/v1",
            },
        )
        assert created.status_code == 201, created.text
        integration_id = created.json()["id"]
        scheduler = stack.client("scheduler")
        syncs = f"/v1/integrations/{integration_id}/syncs"

        # The due loop's first run of a new integration comes at once: wait for it to end.
        async def first_run_done() -> bool:
            state = (await scheduler.get(f"/v1/integrations/{integration_id}/sync-state")).json()
            return state["status"] in ("success", "error")

        await eventually(first_run_done, timeout=30)

        # What the normalizer made of the first run's calls comes into the run (SyncStored): all new.
        async def first_run_stored() -> dict[str, Any] | None:
            [first] = (await scheduler.get(syncs)).json()["items"]
            return first if first["calls_stored"] == first["calls_published"] > 0 else None

        first = await eventually(first_run_stored, timeout=30)
        assert (first["calls_created"], first["calls_updated"]) == (first["calls_published"], 0)
        requests_before = len(fathom.log.api())

        backfill = await scheduler.post(syncs, json={"mode": "backfill"})
        assert backfill.status_code == 202, backfill.text
        run_id = backfill.json()["run_id"]

        async def cancel_after_first_page(event: tuple[str, Any, Any]) -> None:
            if event[2]["pages"] == 1:
                cancelled = await scheduler.post(f"{syncs}/{run_id}/cancel")
                assert cancelled.status_code == 200, cancelled.text

        seen = await _stream_until_end(scheduler, f"{syncs}/{run_id}/events", cancel_after_first_page)
        kind, event_id, final = seen[-1]
        assert (kind, event_id, final["status"]) == ("finished", "end", "cancelled")
        ids = [int(i) for k, i, _ in seen if k == "progress"]
        assert ids == sorted(set(ids))  # no duplicates, in order

        # The gateway's pull stops at its next page: no more list pages are asked for.
        await asyncio.sleep(1.2)  # three pages' time: nothing to await for what must not happen
        asked = len(fathom.log.api()) - requests_before
        assert asked <= 3, asked  # the page seen, the one in flight, the one fetched ahead
        run = next(r for r in (await scheduler.get(syncs)).json()["items"] if r["run_id"] == run_id)
        assert run["status"] == "cancelled"
        assert 1 <= run["pages"] <= 3

        # "Test sync (latest 5)": streamed to its finish.
        latest = await scheduler.post(syncs, json={"mode": "latest", "limit": 5})
        assert latest.status_code == 202, latest.text
        seen = await _stream_until_end(scheduler, f"{syncs}/{latest.json()['run_id']}/events")
        kind, _, final = seen[-1]
        assert (kind, final["status"], final["calls_published"], final["error"]) == ("finished", "success", 5, None)
        # The five were stored by the first run already: the raw stream had them byte for byte.
        assert (final["calls_stored"], final["calls_created"], final["complete"]) == (5, 0, True)

        health = (await scheduler.get(f"/v1/integrations/{integration_id}/health")).json()
        checks = {c["name"]: c["ok"] for c in health["checks"]}
        assert checks == {
            "connected": True, "credentials_valid": True, "sync_ready": True, "has_synced": True,
            "last_run_ok": True, "has_messages": True, "schedule_active": True, "webhook_registered": False,
        }, health  # fmt: skip
