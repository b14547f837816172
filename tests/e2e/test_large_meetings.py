"""Meetings of any size up to the gateway's body limit (16 MiB) travel end to end, by webhook and by
pull, their transcripts byte for byte; a body over the limit is still 413; a provider's oversized
link never makes a large ``MessageUpserted`` (issue #17, item 3)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app

from .conftest import Stack, Subscriber, eventually, fathom_meeting, signed_headers

MIB = 1024 * 1024
# Svix-style speakers and text with escapes and non-ASCII, so that "byte-identical" means something.
_SPEAKERS = ("Marisol Etxeberria", "Kwabena Ashworth-Lindqvist", "Zoë Ångström", "李 小龍")


def big_transcript(size: int, seed: int) -> list[dict[str, Any]]:
    """A transcript whose JSON is at least ``size`` bytes: a three-hour workshop and then some."""
    items: list[dict[str, Any]] = []
    total = i = 0
    while total < size:
        speaker = _SPEAKERS[i % len(_SPEAKERS)]
        text = f'Point {seed}-{i}: the "pilot" covers région EU\\west, ünïcødé ✓ and tabs\tinside, line {i}.'
        item = {
            "speaker": {"display_name": speaker, "matched_calendar_invitee_email": None},
            "text": text,
            "timestamp": f"{i // 3600 % 100:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
        }
        items.append(item)
        total += len(json.dumps(item, ensure_ascii=False).encode())
        i += 1
    return items


def transcript_content(transcript: list[dict[str, Any]]) -> str:
    """What the normalizer stores as the message's content: ``speaker: text`` per line."""
    return "\n".join(f"{t['speaker']['display_name']}: {t['text']}" for t in transcript)


async def _post(stack: Stack, integration_id: str, secret: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=120.0) as client:
        return await client.post(
            f"/v1/webhooks/fathom/{integration_id}",
            content=body,
            headers=signed_headers(secret, body, "msg_big_" + uuid.uuid4().hex),
        )


async def _link(stack: Stack, workspace: str, external_id: str) -> dict[str, Any] | None:
    r = await stack.client("linker").get(
        "/v1/links", params={"workspace_id": workspace, "source": "fathom", "external_id": external_id}
    )
    return r.json() if r.status_code == 200 else None


async def _content(stack: Stack, message_id: str) -> str:
    async with httpx.AsyncClient(
        base_url=stack.url("linker"), headers={"Authorization": f"Bearer {stack.admin_token('linker')}"}, timeout=120.0
    ) as client:
        r = await client.get(f"/v1/messages/{message_id}")
        assert r.status_code == 200, r.text[:300]
        content: str = r.json()["content"]
        return content


@pytest.mark.parametrize("size_mib", [3, 15])
async def test_a_large_signed_meeting_is_stored_and_linkable(stack: Stack, size_mib: int) -> None:
    integration_id, secret = await stack.fathom_integration()
    recording_id = 810_000 + size_mib
    meeting = fathom_meeting(recording_id, transcript=False)
    meeting["transcript"] = big_transcript(size_mib * MIB, recording_id)
    body = json.dumps(meeting, ensure_ascii=False).encode()
    assert size_mib * MIB <= len(body) < 16 * MIB

    accepted = await _post(stack, integration_id, secret, body)
    assert accepted.status_code == 202, accepted.text[:300]

    link = await eventually(lambda: _link(stack, "acme", str(recording_id)), timeout=120, interval=0.5)
    assert link["url"] == f"https://fathom.video/share/e2e-{recording_id}"
    stored = await _content(stack, link["message_id"])
    expected = transcript_content(meeting["transcript"])
    assert stored.encode() == expected.encode()


async def test_a_body_over_the_limit_is_still_413(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(820_017, transcript=False)
    meeting["transcript"] = big_transcript(17 * MIB, 17)
    body = json.dumps(meeting).encode()
    assert len(body) > 16 * MIB
    rejected = await _post(stack, integration_id, secret, body)
    assert rejected.status_code == 413, rejected.text[:300]
    assert rejected.json()["error"] == "body_too_large"


async def test_an_oversized_share_url_makes_a_small_event_with_a_null_link(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    huge_url = "https://fathom.video/share/" + "a" * (540 * 1024)
    meeting = fathom_meeting(830_001, share_url=huge_url)
    body = json.dumps(meeting).encode()
    async with Subscriber(stack.nats_url, durable="e2e-large-links") as subscriber:
        accepted = await _post(stack, integration_id, secret, body)
        assert accepted.status_code == 202, accepted.text[:300]
        link = await eventually(lambda: _link(stack, "acme", "830001"), timeout=60, interval=0.5)
        # the message is stored; the link the linker serves is refused with its reason
        assert link["url"] is None, link
        assert link["reason"] == "too_long", link
        events = await eventually(lambda: subscriber.drain(0.5), timeout=30)
    assert [e["external_id"] for e in events] == ["830001"]
    event = events[0]
    assert len(json.dumps(event)) < 4096, len(json.dumps(event))
    assert event["link_url"] is None
    assert event["link_reason"] == "too_long"
    assert event.get("link_sources") is None  # consumers resolve from the row, as the linker does


class _BigFathom(FathomState):
    """The fake Fathom, with the transcripts of some meetings replaced by huge ones."""

    def __init__(self, config: FathomConfig, big: dict[int, int]) -> None:
        super().__init__(config)
        self.transcripts = {self.index.recording_ids[pos]: big_transcript(size, pos) for pos, size in big.items()}

    def encoded(self, pos: int, flags: set[str]) -> msgspec.Raw:
        raw = super().encoded(pos, flags)
        rid = self.index.recording_ids[pos]
        if rid not in self.transcripts:
            return raw
        meeting = msgspec.json.decode(raw)
        if meeting.get("transcript") is not None:
            meeting["transcript"] = self.transcripts[rid]
        return msgspec.Raw(msgspec.json.encode(meeting))


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS": "400", "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1"}


async def test_large_pulled_meetings_are_stored_and_linkable_and_the_run_moves_on(stack: Stack) -> None:
    fathom = _BigFathom(FathomConfig(seed=5, meetings=6, span_days=30, page_size=10), {1: 3 * MIB, 3: 15 * MIB})
    async with serve_in_process(fathom_app(fathom)) as fathom_url:
        r = await stack.client("gateway").post(
            "/v1/integrations",
            json={
                "workspace_id": "pull-big",
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "base_url": fathom_url + "/external/v1",
            },
        )
        assert r.status_code == 201, r.text
        ids = [str(rid) for rid in fathom.index.recording_ids]

        async def all_linked() -> dict[str, dict[str, Any]] | None:
            found = {i: link for i in ids if (link := await _link(stack, "pull-big", i))}
            return found if len(found) == len(ids) else None

        links = await eventually(all_linked, timeout=180, interval=1.0)
        for rid, transcript in fathom.transcripts.items():
            link = links[str(rid)]
            assert (link["url"] or "").startswith("https://fathom.video/"), link
            stored = await _content(stack, link["message_id"])
            assert stored.encode() == transcript_content(transcript).encode()
