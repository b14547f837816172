"""Dead letters of the normalizer on ``dlq.normalizer``: write one, and the ``dlq`` command's
list / show / redrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from callstream.contracts import DLQ, NORMALIZER_CONSUMER, DeadLetter, dlq_subject

from ._metrics import RAW_CALLS

DLQ_SUBJECT = dlq_subject(NORMALIZER_CONSUMER.durable)
_DECODER = msgspec.json.Decoder(DeadLetter)


async def dead_letter(js: JetStreamContext, msg: Msg, error: str, consumer: str = NORMALIZER_CONSUMER.durable) -> None:
    """Publish the message with its error to the DLQ (awaiting the ack), then terminate it.
    The DLQ entry's id is the original stream sequence, so doing this twice stores it once."""
    meta = msg.metadata
    letter = DeadLetter(
        consumer=consumer,
        subject=msg.subject,
        stream_sequence=meta.sequence.stream,
        headers={k: str(v) for k, v in (msg.headers or {}).items()},
        data=msg.data,
        error=error[:2000],
        delivery_count=meta.num_delivered,
        failed_at=datetime.now(UTC),
    )
    await js.publish(
        DLQ_SUBJECT,
        msgspec.json.encode(letter),
        headers={"Nats-Msg-Id": f"dlq-{consumer}-{meta.stream}-{meta.sequence.stream}"},
    )
    await msg.term()
    RAW_CALLS.labels("dead_lettered").inc()


def decode(raw: RawStreamMsg) -> DeadLetter:
    return _DECODER.decode(raw.data or b"")


async def entries(js: JetStreamContext) -> list[tuple[int, DeadLetter]]:
    """Every entry still in the DLQ stream for this consumer, oldest first, by DLQ sequence."""
    info = await js.stream_info(DLQ)
    found: list[tuple[int, DeadLetter]] = []
    if info.state.messages == 0:
        return found
    seq = info.state.first_seq
    while seq <= info.state.last_seq:
        try:
            raw = await js.get_msg(DLQ, seq=seq, next=True, subject=DLQ_SUBJECT)
        except Exception:  # nats NotFoundError: nothing at or after seq
            break
        if raw.seq is None:
            break
        found.append((raw.seq, decode(raw)))
        seq = raw.seq + 1
    return found


def summary_lines(found: list[tuple[int, DeadLetter]]) -> Iterator[str]:
    for seq, letter in found:
        yield msgspec.json.encode(
            {
                "dlq_seq": seq,
                "consumer": letter.consumer,
                "subject": letter.subject,
                "stream_sequence": letter.stream_sequence,
                "delivery_count": letter.delivery_count,
                "failed_at": letter.failed_at,
                "error": letter.error,
                "bytes": len(letter.data),
            }
        ).decode()


async def redrive(js: JetStreamContext, seq: int, letter: DeadLetter) -> None:
    """Publish the original bytes to the original subject again, then drop the DLQ entry.
    A fresh ``Nats-Msg-Id``: the original one may still be inside the duplicate window."""
    headers = {k: v for k, v in letter.headers.items() if k.lower() not in {"nats-msg-id", "nats-expected-stream"}}
    headers["Nats-Msg-Id"] = f"redrive-{letter.consumer}-{seq}"
    await js.publish(letter.subject, letter.data, headers=headers)
    await js.delete_msg(DLQ, seq)
