from callstream.contracts import CONSUMERS, STREAMS
from callstream.runtime import ensure_all


async def test_declaring_streams_twice_is_harmless_and_matches_the_contracts(jetstream) -> None:
    await ensure_all(jetstream)  # the fixture already declared them once
    infos = {s.config.name: s.config for s in await jetstream.streams_info()}
    assert set(infos) == {s.name for s in STREAMS}
    for spec in STREAMS:
        assert infos[spec.name].subjects == list(spec.subjects)
        assert infos[spec.name].duplicate_window == spec.duplicate_window_seconds
    for consumer in CONSUMERS:
        info = await jetstream.consumer_info(consumer.stream, consumer.durable)
        assert info.config.filter_subject == consumer.filter_subject
        assert info.config.max_deliver == consumer.max_deliver


async def test_a_resend_with_the_same_msg_id_is_stored_once(jetstream) -> None:
    first = await jetstream.publish("calls.raw.fathom", b"{}", headers={"Nats-Msg-Id": "wh-same"})
    again = await jetstream.publish("calls.raw.fathom", b"{}", headers={"Nats-Msg-Id": "wh-same"})
    assert again.duplicate is True
    assert again.seq == first.seq
    assert (await jetstream.stream_info("CALLS_RAW")).state.messages == 1
