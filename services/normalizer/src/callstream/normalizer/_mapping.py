"""Raw event bytes to a mapped message, whichever the provider. Pure: no I/O."""

from __future__ import annotations

import msgspec

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, HostAllowList, RawCall

from ._mapped import MappedMessage, UnmappableError, finish
from ._mapping_fathom import map_fathom
from ._mapping_gong import map_gong

_RAW = msgspec.json.Decoder(RawCall)


def decode_raw_call(data: bytes) -> RawCall:
    try:
        return _RAW.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UnmappableError(f"not a RawCall v1: {exc}") from None
    except RecursionError:  # msgspec recurses once per level of the payload it passes over
        raise UnmappableError("not a RawCall v1: its payload is nested too deep to decode") from None


def map_raw_call(data: bytes, links: HostAllowList = DEFAULT_LINK_ALLOW_LIST) -> MappedMessage:
    """Map one ``calls.raw.*`` message; raises :class:`UnmappableError` (and nothing else) for
    bytes that can never become a message. ``links``: the hosts links may point at
    (``CALLSTREAM_LINK_HOSTS``, the linker's)."""
    raw = decode_raw_call(data)
    try:
        mapped = map_fathom(raw, links) if raw.source == "fathom" else map_gong(raw, links)
    except UnmappableError:
        raise
    except Exception as exc:
        # A shape the tolerant models accept but the mapping cannot use, whatever it raises
        # (RecursionError, KeyError, ...): the same bytes fail the same way on every delivery, so
        # they go to the DLQ with the error; never a crash of the worker.
        raise UnmappableError(f"cannot map {raw.source} payload: {type(exc).__name__}: {str(exc)[:300]}") from None
    if mapped.external_id != raw.external_id:
        raise UnmappableError(
            f"external_id {raw.external_id!r} of the event differs from {mapped.external_id!r} in the payload"
        )
    return finish(mapped, links)
