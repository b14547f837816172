"""Created integrations are pulled on schedule from the fake Fathom and Gong, and every call becomes
a linked message with the right customer: the HubSpot account for Gong, an email domain for Fathom."""

from __future__ import annotations

import pytest

from callstream.normalizer._domains import is_company_domain  # the free-mail list the normalizer uses
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app
from tests.fakes.gong._data import Selector, build_call

from .conftest import Stack, eventually

MEETINGS = 24
CALLS = 30


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    # First runs reach back over all the fakes' history, and the due loop ticks every second.
    return {**service_env, "CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS": "400", "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1"}


async def _links(stack: Stack, workspace: str, source: str, ids: list[str]) -> dict[str, dict]:
    found = {}
    client = stack.client("linker")
    for external_id in ids:
        r = await client.get(
            "/v1/links", params={"workspace_id": workspace, "source": source, "external_id": external_id}
        )
        if r.status_code == 200:
            found[external_id] = r.json()
    return found


async def test_scheduled_pulls_become_linked_messages_with_customers(stack: Stack) -> None:
    fathom = FathomState(FathomConfig(seed=3, meetings=MEETINGS, span_days=200))
    gong = GongState(GongConfig(seed=4, calls=CALLS, span_days=200))
    async with serve_in_process(fathom_app(fathom)) as fathom_url, serve_in_process(gong_app(gong)) as gong_url:
        gateway = stack.client("gateway")
        created = {}
        for workspace, body in (
            (
                "pull-fathom",
                {
                    "provider": "fathom",
                    "credentials": {"api_key": "fathom-test-key"},
                    "base_url": fathom_url + "/external/v1",
                },
            ),
            (
                "pull-gong",
                {
                    "provider": "gong",
                    "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                    "base_url": gong_url,
                },
            ),
        ):
            r = await gateway.post("/v1/integrations", json={"workspace_id": workspace, **body})
            assert r.status_code == 201, r.text
            created[workspace] = r.json()["id"]

        fathom_ids = [str(i) for i in fathom.index.recording_ids]
        gong_ids = list(gong.index.ids)
        assert len(fathom_ids) == MEETINGS
        assert len(gong_ids) == CALLS

        async def all_linked():
            f = await _links(stack, "pull-fathom", "fathom", fathom_ids)
            g = await _links(stack, "pull-gong", "gong", gong_ids)
            return (f, g) if len(f) == MEETINGS and len(g) == CALLS else None

        fathom_links, gong_links = await eventually(all_linked, timeout=90, interval=1.0)

        # the scheduler recorded successful runs for both
        scheduler = stack.client("scheduler")
        for integration_id in created.values():
            state = (await scheduler.get(f"/v1/integrations/{integration_id}/sync-state")).json()
            assert state["status"] in ("success", "syncing"), state

        linker = stack.client("linker")
        domain_customers = 0
        for external_id, link in fathom_links.items():
            assert (link["url"] or "").startswith("https://fathom.video/"), link
            meeting = fathom.meeting(int(external_id))
            message = (await linker.get(f"/v1/messages/{link['message_id']}")).json()
            external_domains = {
                (i.get("email") or "").rsplit("@", 1)[-1].lower()
                for i in meeting.get("calendar_invitees") or []
                if i.get("is_external")
            }
            company_domains = {d for d in external_domains if is_company_domain(d)}
            if company_domains:
                assert message["customer"]["domain"] in company_domains, (message["customer"], company_domains)
                domain_customers += 1
            else:  # internal-only, or only free-mail guests: no company to name
                assert message["customer"] is None, (message["customer"], external_domains)

        assert domain_customers > 0

        hubspot_customers = 0
        for pos, external_id in enumerate(gong_ids):
            link = gong_links[external_id]
            assert ".app.gong.io/call?id=" in (link["url"] or ""), link
            call = build_call(gong.index, pos, Selector(context="Extended", parties=True), host=gong.config.app_host)
            accounts = [
                obj
                for ctx in call.get("context") or []
                if ctx.get("system") == "HubSpot"
                for obj in ctx.get("objects") or []
                if obj.get("objectType") == "Account"
            ]
            message = (await linker.get(f"/v1/messages/{link['message_id']}")).json()
            if accounts:
                fields = {f["name"].lower(): f["value"] for f in accounts[0].get("fields") or []}
                assert message["customer"]["external_system"] == "hubspot", message["customer"]
                assert message["customer"]["domain"] == fields["domain"], (message["customer"], fields)
                hubspot_customers += 1
        assert hubspot_customers > 0  # the fake gives most calls a HubSpot account
