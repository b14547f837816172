"""Dead letters of the normalizer on ``dlq.normalizer``: the ``dlq`` command's list / show /
redrive (they are written by the runtime's ``dead_letter``)."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from callstream.contracts import (
    DLQ,
    NORMALIZER_CONSUMER,
    NORMALIZER_DATAPOINTS_CONSUMER,
    NORMALIZER_ERASURES_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    NORMALIZER_LISTINGS_CONSUMER,
    DeadLetter,
    dlq_subject,
)

from ._outbox import OUTBOX_DEAD_LETTERS

DLQ_SUBJECT = dlq_subject(NORMALIZER_CONSUMER.durable)
# Every dead letter of the normalizer: raw calls, feature links, data points, and outbox rows the relay could
# never publish (``_outbox.OUTBOX_DEAD_LETTERS``).
DLQ_SUBJECTS = (
    DLQ_SUBJECT,
    dlq_subject(NORMALIZER_FEATURES_CONSUMER.durable),
    dlq_subject(NORMALIZER_DATAPOINTS_CONSUMER.durable),
    dlq_subject(NORMALIZER_LISTINGS_CONSUMER.durable),
    # an erasure request it could never carry out: the job stays running until someone looks here
    dlq_subject(NORMALIZER_ERASURES_CONSUMER.durable),
    dlq_subject(OUTBOX_DEAD_LETTERS),
)
_DECODER = msgspec.json.Decoder(DeadLetter)


def decode(raw: RawStreamMsg) -> DeadLetter:
    return _DECODER.decode(raw.data or b"")


async def entry(js: JetStreamContext, seq: int) -> DeadLetter | None:
    """One dead letter of the normalizer by its DLQ sequence (None: no such entry, or another
    service's): one read, not a walk of the whole DLQ."""
    if not 1 <= seq < 2**64:  # no stream sequence (NATS answers these 400, not 404; 0 means "none")
        return None
    try:
        raw = await js.get_msg(DLQ, seq=seq)
    except NotFoundError:
        return None
    return decode(raw) if raw.subject in DLQ_SUBJECTS else None


async def entries(js: JetStreamContext) -> list[tuple[int, DeadLetter]]:
    """Every entry still in the DLQ stream for the normalizer's consumers, oldest first, by DLQ
    sequence."""
    info = await js.stream_info(DLQ)
    found: list[tuple[int, DeadLetter]] = []
    if info.state.messages == 0:
        return found
    for subject in DLQ_SUBJECTS:
        seq = info.state.first_seq
        while seq <= info.state.last_seq:
            try:
                raw = await js.get_msg(DLQ, seq=seq, next=True, subject=subject)
            except Exception:  # nats NotFoundError: nothing at or after seq
                break
            if raw.seq is None:
                break
            found.append((raw.seq, decode(raw)))
            seq = raw.seq + 1
    return sorted(found, key=lambda entry: entry[0])


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


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject filter semantics: ``*`` is one token, a final ``>`` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or part not in ("*", tokens[i]):
            return False
    return len(tokens) == len(wanted)


def valid_subject_filter(pattern: str) -> bool:
    parts = pattern.split(".")
    return all(parts) and ">" not in parts[:-1] and all(t in ("*", ">") or not set(t) & {"*", ">", " "} for t in parts)


async def redrive(js: JetStreamContext, seq: int, letter: DeadLetter) -> None:
    """Publish the original bytes to the original subject again, then drop the DLQ entry.
    A fresh ``Nats-Msg-Id``: the original one may still be inside the duplicate window. The id is
    the DLQ entry's, so a redrive repeated (its answer lost, two operators at once) is one publish
    within the duplicate window, and an entry someone else already dropped is not an error."""
    headers = {k: v for k, v in letter.headers.items() if k.lower() not in {"nats-msg-id", "nats-expected-stream"}}
    headers["Nats-Msg-Id"] = f"redrive-{letter.consumer}-{seq}"
    await js.publish(letter.subject, letter.data, headers=headers)
    try:
        await js.delete_msg(DLQ, seq)
    except APIError:
        try:  # the server says "no message found" as a generic delete failure: look
            await js.get_msg(DLQ, seq)
        except NotFoundError:
            return
        raise
