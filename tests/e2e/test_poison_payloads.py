"""Poison payloads on real processes (issue #17, item 2): the gateway refuses with 400 what the
normalizer could never map, and a raw call the normalizer cannot map goes to the DLQ without
stopping the consumer: the next good meeting is stored within seconds by the same process."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import msgspec
import nats

from callstream.contracts import DLQ, DeadLetter, RawCall
from callstream.devstack import ServiceProcess

from .conftest import eventually, fathom_meeting, signed_headers

DEEP = 5_000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_meeting(recording_id: int, depth: int = DEEP) -> bytes:
    """A Fathom meeting carrying an unknown field nested ``depth`` levels (valid JSON)."""
    return b'{"recording_id": %d, "title": "deep", "extra": %s}' % (recording_id, nested(depth))


async def _fathom_integration(gateway: ServiceProcess, admin_token: str) -> tuple[str, str]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {admin_token}"}) as c:
        r = await c.post(
            "/v1/integrations",
            json={
                "workspace_id": "acme",
                "provider": "fathom",
                "credentials": {"api_key": "e2e-api-key"},
                "webhook_secret": secret,
            },
        )
    assert r.status_code == 201, r.text
    return r.json()["id"], secret


async def _post(gateway: ServiceProcess, integration_id: str, secret: str, body: bytes) -> tuple[int, dict]:
    headers = signed_headers(secret, body, "msg_" + uuid.uuid4().hex)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as c:
        r = await c.post(f"/v1/webhooks/fathom/{integration_id}", content=body, headers=headers)
    try:
        answer = r.json()
    except ValueError:
        answer = {"text": r.text[:200]}
    return r.status_code, answer


async def _raw_count(js) -> int:
    return (await js.stream_info("CALLS_RAW")).state.messages


async def test_the_gateway_refuses_what_the_normalizer_could_never_map(
    service_env: dict[str, str], nats_url: str, jetstream: object, start_service: Callable[..., ServiceProcess]
) -> None:
    gateway = start_service("gateway", service_env)
    integration_id, secret = await _fathom_integration(gateway, service_env["CALLSTREAM_GATEWAY_ADMIN_TOKEN"])
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        status, answer = await _post(gateway, integration_id, secret, deep_meeting(1))
        assert (status, answer.get("error")) == (400, "nested_too_deep"), answer
        assert answer["detail"]
        # the same shape with a depth the limit allows is accepted
        status, answer = await _post(gateway, integration_id, secret, deep_meeting(2, depth=60))
        assert status == 202, answer
        # the normalizer maps only an integer recording_id
        as_text = json.dumps(fathom_meeting(700123) | {"recording_id": "123"}).encode()
        status, answer = await _post(gateway, integration_id, secret, as_text)
        assert (status, answer.get("error")) == (400, "not_a_meeting"), answer
        # a field of the wrong type is refused too, not dead-lettered later
        wrong_type = json.dumps(fathom_meeting(700124) | {"transcript": "not a list"}).encode()
        status, answer = await _post(gateway, integration_id, secret, wrong_type)
        assert (status, answer.get("error")) == (400, "not_a_meeting"), answer
        assert await _raw_count(js) == 1  # only the accepted one
        assert gateway.process is not None
        assert gateway.process.poll() is None  # still serving
    finally:
        await nc.close()


def _raw_call(payload: bytes, external_id: str) -> bytes:
    return msgspec.json.encode(
        RawCall(
            event_id=f"poison-{uuid.uuid4().hex}",
            source="fathom",
            workspace_id="acme",
            integration_id=str(uuid.uuid4()),
            external_id=external_id,
            origin="pull",
            received_at=datetime.now(UTC),
            payload=msgspec.Raw(payload),
        )
    )


async def _dead_letters(js) -> list[DeadLetter]:
    info = await js.stream_info(DLQ)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        found.append(msgspec.json.decode((await js.get_msg(DLQ, seq)).data, type=DeadLetter))
    return found


async def _stored(database_url: str, external_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("select count(*) from messages where external_id = $1", external_id))
    finally:
        await conn.close()


async def test_a_poison_raw_call_is_dead_lettered_and_the_next_meeting_is_stored(
    service_env: dict[str, str],
    database_url: str,
    nats_url: str,
    jetstream: object,
    start_service: Callable[..., ServiceProcess],
) -> None:
    normalizer = start_service("normalizer", service_env)
    pid = normalizer.process.pid if normalizer.process else None
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        poisons = {
            # too deep for any decoder: the envelope's own decode gives up (RecursionError)
            "900001": deep_meeting(900001),
            # decodable, but nested deeper than the limit the gateway applies
            "900002": deep_meeting(900002, depth=200),
            # an identity of the wrong type
            "900003": json.dumps(fathom_meeting(900003) | {"recording_id": "900003"}).encode(),
        }
        seqs = {}
        for external_id, payload in poisons.items():
            seqs[(await js.publish("calls.raw.fathom", _raw_call(payload, external_id))).seq] = external_id
        good = json.dumps(fathom_meeting(900100)).encode()
        await js.publish("calls.raw.fathom", _raw_call(good, "900100"))
        await eventually(lambda: _stored(database_url, "900100"), timeout=10.0)
        letters = await eventually(lambda: _letters_if(js, len(poisons)), timeout=10.0)
        by_id = {seqs[letter.stream_sequence]: letter for letter in letters}
        assert sorted(by_id) == sorted(poisons)
        assert "nested" in by_id["900001"].error
        assert "nested" in by_id["900002"].error
        assert "recording_id" in by_id["900003"].error
        for external_id in poisons:
            assert not await _stored(database_url, external_id)
        assert normalizer.process is not None
        assert normalizer.process.pid == pid  # the same process, never restarted
        assert normalizer.process.poll() is None
    finally:
        await nc.close()


async def _letters_if(js, n: int) -> list[DeadLetter] | None:
    letters = await _dead_letters(js)
    return letters if len(letters) >= n else None
