from datetime import UTC, datetime

import msgspec
import pytest

from callstream import contracts as c

NOW = datetime(2026, 1, 14, 16, 2, 11, tzinfo=UTC)


def _examples() -> list[msgspec.Struct]:
    return [
        c.RawCall(
            event_id="wh-1",
            source="fathom",
            workspace_id="acme",
            integration_id="i-1",
            external_id="123456789",
            origin="webhook",
            received_at=NOW,
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            payload=msgspec.Raw(b'{"recording_id":123456789,"title":"x"}'),
        ),
        c.SyncRequested(
            run_id="r-1",
            integration_id="i-1",
            workspace_id="acme",
            provider="gong",
            mode="range",
            window=c.TimeWindow(start=NOW, end=NOW),
            limit=10,
        ),
        c.SyncProgress(run_id="r-1", integration_id="i-1", page=2, calls_published=200, checkpoint="cur", at=NOW),
        c.SyncFinished(
            run_id="r-1", integration_id="i-1", status="error", pages=2, calls_published=200, error="401", at=NOW
        ),
        c.MessageUpserted(
            message_id="m-1",
            workspace_id="acme",
            source="gong",
            external_id="5520183947712650031",
            change="created",
            version=1,
            sent_at=NOW,
        ),
        c.FeatureLinked(
            workspace_id="acme", feature_id="f-1", message=c.MessageRef(source="fathom", external_id="123456789")
        ),
        c.FeatureUnlinked(
            workspace_id="acme",
            feature_id="f-1",
            message=c.MessageRef(source="gong", external_id="5520183947712650031"),
        ),
        c.DeadLetter(
            consumer="normalizer",
            subject="calls.raw.fathom",
            stream_sequence=7,
            headers={"Nats-Msg-Id": "wh-1"},
            data=b"\x00not json",
            error="ValidationError: ...",
            delivery_count=1,
            failed_at=NOW,
        ),
    ]


@pytest.mark.parametrize("message", _examples(), ids=lambda m: type(m).__name__)
def test_every_wire_message_round_trips_through_json(message: msgspec.Struct) -> None:
    encoded = msgspec.json.encode(message)
    decoded = msgspec.json.decode(encoded, type=type(message))
    assert msgspec.json.encode(decoded) == encoded
    assert msgspec.structs.asdict(decoded).keys() == msgspec.structs.asdict(message).keys()


def test_raw_call_keeps_the_provider_bytes_exactly() -> None:
    provider = b'{"recording_id": 123456789,   "title":"spaces \\u00e9 kept" , "z":1}'
    raw = _examples()[0]
    assert isinstance(raw, c.RawCall)
    wire = msgspec.json.encode(msgspec.structs.replace(raw, payload=msgspec.Raw(provider)))
    assert provider in wire
    assert bytes(msgspec.json.decode(wire, type=c.RawCall).payload) == provider


def test_unknown_fields_from_a_newer_publisher_are_ignored() -> None:
    wire = msgspec.json.encode(_examples()[4])
    newer = wire[:-1] + b',"added_in_v1_1":{"x":[1,2]}}'
    assert msgspec.json.decode(newer, type=c.MessageUpserted) == _examples()[4]


def test_a_message_of_an_unknown_version_is_rejected_not_guessed() -> None:
    wire = msgspec.json.encode(_examples()[4]).replace(b'"v":1', b'"v":2')
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(wire, type=c.MessageUpserted)


def test_sync_events_decode_as_a_tagged_union() -> None:
    progress, finished = _examples()[2], _examples()[3]
    decoder = msgspec.json.Decoder(c.SyncEvent)
    assert decoder.decode(msgspec.json.encode(progress)) == progress
    assert decoder.decode(msgspec.json.encode(finished)) == finished


@pytest.mark.parametrize("workspace", ["", "a" * 65, "has space", "../etc", "ümlaut"])
def test_workspace_ids_outside_the_agreed_alphabet_are_rejected(workspace: str) -> None:
    wire = msgspec.json.encode(_examples()[4]).replace(b'"acme"', msgspec.json.encode(workspace))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(wire, type=c.MessageUpserted)


def test_message_ids_are_deterministic_and_distinct() -> None:
    assert c.webhook_event_id("i-1", "msg_1") == c.webhook_event_id("i-1", "msg_1")
    assert c.webhook_event_id("i-1", "msg_1") != c.webhook_event_id("i-2", "msg_1")
    assert c.pull_event_id("i-1", "42", b"{}") != c.pull_event_id("i-1", "42", b'{"a":1}')
    # a separator keeps ("i-1", "42x") and ("i-142", "x") apart
    assert c.pull_event_id("i-1", "42x", b"") != c.pull_event_id("i-142", "x", b"")
    link = c.feature_link_event_id("linked", "acme", "f-1", "gong", "1", "none")
    assert link == c.feature_link_event_id("linked", "acme", "f-1", "gong", "1", "none")
    assert link != c.feature_link_event_id("unlinked", "acme", "f-1", "gong", "1", "none")
    assert link != c.feature_link_event_id("linked", "acme", "f-1", "gong", "1", "linked 2026-01-14")
    assert link != c.feature_link_event_id("linked", "acme", "f-1", "gong", "1n", "one")
    assert c.hash_api_token("t") == c.hash_api_token("t") != c.hash_api_token("u")


def test_every_subject_helper_lands_in_a_declared_stream() -> None:
    subjects = [
        c.raw_calls_subject("fathom", "3f1c2a9e-8b7d-4c55-9a10-2e6f0d4b7c81"),
        c.raw_calls_subject("gong", "int-gong"),
        c.sync_requested_subject("gong"),
        c.sync_events_subject("fathom"),
        c.messages_upserted_subject("gong"),
        c.dlq_subject("normalizer"),
        c.FEATURES_LINKED,
        c.FEATURES_UNLINKED,
    ]
    for subject in subjects:
        owners = [s.name for s in c.STREAMS if any(_matches(p, subject) for p in s.subjects)]
        assert len(owners) == 1, (subject, owners)


def test_every_durable_consumer_filters_inside_its_stream() -> None:
    streams = {s.name: s for s in c.STREAMS}
    for consumer in c.CONSUMERS:
        stream = streams[consumer.stream]
        assert any(_matches(p, consumer.filter_subject.replace(">", "x")) for p in stream.subjects), consumer


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)
