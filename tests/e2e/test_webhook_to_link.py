"""A signed Fathom webhook travels to a served link, and subscribers hear of it exactly once."""

import asyncio
import json
import uuid

from callstream.devstack import pg_dump

from .conftest import Stack, Subscriber, eventually, fathom_meeting, signed_headers


async def _post_webhook(stack: Stack, integration_id: str, secret: str, meeting: dict, webhook_id: str):
    body = json.dumps(meeting).encode()
    return await stack.client("gateway").post(
        f"/v1/webhooks/fathom/{integration_id}", content=body, headers=signed_headers(secret, body, webhook_id)
    )


async def _link(stack: Stack, recording_id: int):
    r = await stack.client("linker").get(
        "/v1/links", params={"workspace_id": "acme", "source": "fathom", "external_id": str(recording_id)}
    )
    return r.json() if r.status_code == 200 else None


async def test_signed_webhook_becomes_a_linked_message_with_its_customer(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(700001)
    async with Subscriber(stack.nats_url) as subscriber:
        accepted = await _post_webhook(stack, integration_id, secret, meeting, "msg_e2e_" + uuid.uuid4().hex)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["duplicate"] is False

        link = await eventually(lambda: _link(stack, 700001))
        assert link["url"] == "https://fathom.video/share/e2e-700001"
        assert link["kind"] == "recording"
        assert link["origin"] == "metadata.recording_url"

        message = (await stack.client("linker").get(f"/v1/messages/{link['message_id']}")).json()
        assert message["source"] == "fathom"
        assert message["external_id"] == "700001"
        assert message["customer"]["domain"] == "tallowbrook-capital.com"
        assert message["message_metadata"]["session_id"] == 700001
        assert "raw_session_data" not in message["message_metadata"]
        assert message["content"].startswith(meeting["transcript"][0]["speaker"]["display_name"] + ": ")

        events = await eventually(lambda: subscriber.drain(0.2))
        events = await subscriber.drain(1.0)
        assert [(e["external_id"], e["change"]) for e in events] == [("700001", "created")]
        assert events[0]["message_id"] == link["message_id"]


async def test_a_redelivered_webhook_is_acknowledged_again_and_changes_nothing(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(700002)
    async with Subscriber(stack.nats_url) as subscriber:
        first = await _post_webhook(stack, integration_id, secret, meeting, "msg_same")
        again = await _post_webhook(stack, integration_id, secret, meeting, "msg_same")
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json() == {**first.json(), "duplicate": True}
        # another delivery of the same meeting (a second webhook, or a pull) is deduplicated by content
        other = await _post_webhook(stack, integration_id, secret, meeting, "msg_other")
        assert other.status_code == 202
        await eventually(lambda: _link(stack, 700002))
        events = await subscriber.drain(1.5)
        assert [(e["external_id"], e["change"]) for e in events] == [("700002", "created")]


async def test_transcript_arriving_later_updates_the_message_once(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    async with Subscriber(stack.nats_url) as subscriber:
        bare = fathom_meeting(700003, transcript=False)
        assert (await _post_webhook(stack, integration_id, secret, bare, "msg_bare")).status_code == 202
        link = await eventually(lambda: _link(stack, 700003))
        full = fathom_meeting(700003)
        assert (await _post_webhook(stack, integration_id, secret, full, "msg_full")).status_code == 202
        # an older, transcript-less copy arriving last must not erase it
        assert (await _post_webhook(stack, integration_id, secret, bare, "msg_bare_again")).status_code == 202

        async def has_transcript():
            m = (await stack.client("linker").get(f"/v1/messages/{link['message_id']}")).json()
            return m if m["message_metadata"].get("has_transcript") else None

        message = await eventually(has_transcript)
        assert message["content"]
        events = await subscriber.drain(1.5)
        assert [(e["external_id"], e["change"]) for e in events] == [("700003", "created"), ("700003", "updated")]


async def test_no_secret_token_or_transcript_reaches_a_log_or_the_database_in_plaintext(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    token = (
        await stack.client("gateway").post("/v1/tokens", json={"workspace_ids": ["acme"], "name": "e2e reader"})
    ).json()["token"]
    meeting = fathom_meeting(700004)
    sentence = meeting["transcript"][-1]["text"]
    assert (await _post_webhook(stack, integration_id, secret, meeting, "msg_secrets")).status_code == 202
    reader = stack.client("linker")
    reader.headers["Authorization"] = f"Bearer {token}"
    link = await eventually(lambda: _link(stack, 700004))
    served = (await reader.get(f"/v1/messages/{link['message_id']}")).json()
    assert sentence in served["content"]  # the reader token works, and the transcript is stored

    for proc in stack.procs.values():
        proc.stop()
    logs = "\n".join(p.log_file.read_text(errors="replace") for p in stack.procs.values())
    assert "integration created" in logs  # the logs are there to be searched
    secret_key = stack.env["CALLSTREAM_SECRET_KEY"].split(":", 1)[1]
    for name, value in {
        "webhook secret": secret,
        "webhook key": secret.removeprefix("whsec_"),
        "api key": "e2e-api-key",
        **{f"{service} admin token": token for service, token in stack.admin_tokens.items()},
        "reader token": token,
        "encryption key": secret_key,
        "transcript": sentence,
    }.items():
        assert value not in logs, f"{name} in a log line"

    # every table of every service, not only the ones meant to hold credentials
    dump = await asyncio.to_thread(pg_dump, stack.env["CALLSTREAM_DATABASE_URL"])
    assert "e2e reader" in dump  # the dump holds the rows (the token's name is stored, its value not)
    assert integration_id in dump
    for name, value in {
        "webhook secret": secret,
        "webhook key": secret.removeprefix("whsec_"),
        "api key": "e2e-api-key",
        **{f"{service} admin token": token for service, token in stack.admin_tokens.items()},
        "reader token": token,
        "encryption key": secret_key,
    }.items():
        assert value not in dump, f"{name} stored in plaintext"
