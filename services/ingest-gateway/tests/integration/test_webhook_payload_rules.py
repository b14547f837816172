"""The webhook refuses with 400 what the normalizer could never map (issue #17, item 2): the rule of
``callstream.contracts.providers`` (nesting depth first, then the tolerant Fathom model), answered
the same in front of litestar and through the route, and nothing is published."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from gateway_harness import Gateway
from nats.js import JetStreamContext

from callstream.contracts import CALLS_RAW
from callstream.contracts.providers import MAX_JSON_DEPTH

MEETING: dict[str, Any] = {
    "recording_id": 512330871,
    "title": "Pilot scoping",
    "transcript": [{"speaker": {"display_name": "Ana"}, "text": "[laughs] {not json", "timestamp": "00:00:04"}],
}


def body(**changes: Any) -> bytes:
    return json.dumps(MEETING | changes).encode()


def nested(levels: int) -> bytes:
    """A meeting whose unknown field makes the body ``levels`` deep in all."""
    inner = levels - 1  # the meeting object is the first level
    return b'{"recording_id": 1, "extra": ' + b"[" * inner + b"]" * inner + b"}"


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def _published(js: JetStreamContext) -> int:
    return int((await js.stream_info(CALLS_RAW)).state.messages)


REFUSED = {
    "nested 5,000 levels": (nested(5_000), "nested_too_deep"),
    "nested one level past the limit": (nested(MAX_JSON_DEPTH + 1), "nested_too_deep"),
    "recording_id as text": (body(recording_id="123"), "not_a_meeting"),
    "recording_id empty": (body(recording_id=""), "not_a_meeting"),
    "recording_id missing": (json.dumps({"title": "x"}).encode(), "not_a_meeting"),
    "transcript not a list": (body(transcript="hello"), "not_a_meeting"),
    "speaker of the wrong type": (body(transcript=[{"speaker": "Ana", "text": "hi"}]), "not_a_meeting"),
    "unknown field, wrong known type": (body(title=5, brand_new_field={"a": [1]}), "not_a_meeting"),
    "brackets that do not balance": (b'{"recording_id": 1, "x": [[[}', "invalid_json"),
    "not json": (b"not json", "invalid_json"),
}


CONTENT_MISMATCH = {"transcript not a list", "speaker of the wrong type", "unknown field, wrong known type"}


@pytest.mark.parametrize("name", list(REFUSED))
async def test_refused_with_400_the_same_both_ways(gateway: Gateway, js: JetStreamContext, name: str) -> None:
    payload, code = REFUSED[name]
    iid = (await gateway.create_fathom())["id"]
    hot = gateway.app.state.hot_webhooks
    answers = []
    for enabled in (True, False):  # in front of litestar, then through the route
        hot.enabled, before = enabled, hot.answered
        response = await gateway.deliver(iid, payload, webhook_id=f"msg_{enabled}")
        assert hot.answered == before + enabled
        answers.append((response.status_code, response.json()))
        # Final (Svix stops resending) when it can never be a meeting; a meeting whose other
        # fields do not fit the model stays in Svix's retries, in case Fathom changed a type.
        final = name not in CONTENT_MISMATCH
        assert (response.headers.get("webhook-delivery") == "abort-message") is final, name
    hot.enabled = True
    assert answers[0] == answers[1], name
    status, answer = answers[0]
    assert (status, answer["error"]) == (400, code), answer
    assert answer["detail"]
    assert len(answer["detail"]) < 300
    assert await _published(js) == 0


ACCEPTED = {
    "nested exactly to the limit": nested(MAX_JSON_DEPTH),
    "an unknown field (documented ones are not all there is)": body(brand_new_field={"a": [1, {"b": None}]}),
    "brackets and quotes inside strings": body(title='"]]]]}}}} \\" [[[[', transcript=[{"text": "\\\\"}]),
    "the documented fields": body(),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
async def test_accepted(gateway: Gateway, js: JetStreamContext, name: str) -> None:
    iid = (await gateway.create_fathom())["id"]
    response = await gateway.deliver(iid, ACCEPTED[name])
    assert response.status_code == 202, response.text
    assert await _published(js) == 1
