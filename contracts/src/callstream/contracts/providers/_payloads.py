"""The one rule for whether provider bytes can ever become a message.

The gateway applies it before it accepts a webhook (400 otherwise) or publishes a pulled call
(skipped otherwise), and the normalizer applies it when it maps a raw call (the DLQ otherwise), so
what the gateway accepts the normalizer can map, and the two can never disagree.

1. JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused before anything decodes it: the C
   decoders recurse per level (msgspec raises ``RecursionError`` near 1,000 levels, PostgreSQL's
   jsonb and Python's ``json`` have limits of their own), and no provider object comes near it.
2. The bytes decode as the tolerant provider model (``recording_id`` an integer, every known field
   of its documented type; unknown fields ignored).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import msgspec

from .._messages import GongCallBundle
from .fathom import FathomMeeting
from .gong import GongCall, GongCallTranscript

MAX_JSON_DEPTH = 64

Refusal = Literal["invalid_json", "nested_too_deep", "not_a_meeting", "not_a_call"]


class PayloadRejected(ValueError):
    """Provider bytes that can never become a message, however often they are retried.

    ``code`` is a machine code (the gateway answers it as the error of its 400), ``detail`` a short
    text naming the rule and the JSON path (msgspec's errors carry paths, never values)."""

    def __init__(self, code: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.code: Refusal = code
        self.detail = detail


# --- nesting depth --------------------------------------------------------------------------------
#
# No well-kept library fits: msgspec and orjson have no depth option (msgspec's own limit is the
# interpreter's recursion limit, orjson's a fixed 1,024), and a scan in Python costs milliseconds
# for a 20 KB body. So the scan is made of bytes methods that run in C, each one pass:
#  - escaped backslashes and escaped quotes go (only when the body has a backslash at all), so every
#    quote left opens or closes a string;
#  - one ``translate`` keeps only quotes and brackets, with ``{}`` written as ``[]``;
#  - a run of quotes keeps its parity (``""`` pairs go): after that a quote is left only around a
#    string holding a bracket, and the brackets between such quotes are dropped;
#  - each ``replace(b"[]", b"")`` removes the innermost level, so the number of passes until
#    nothing is left is the depth. A body at most ``limit`` deep is done after depth-many passes.
_STRUCTURE = b'"[]{}'
_DROP = bytes(sorted(set(range(256)) - set(_STRUCTURE)))
_SQUARE = bytes.maketrans(b"{}", b"[]")


def nesting_within(data: bytes | msgspec.Raw, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether no array or object in ``data`` (JSON text) is nested more than ``limit`` deep.

    Brackets inside strings do not count. Bytes whose brackets outside strings do not balance are
    not JSON: :func:`check_nesting` calls them so; here they are "not within"."""
    return _nesting(data, limit) == "within"


def _nesting(data: bytes | msgspec.Raw, limit: int) -> Literal["within", "too_deep", "unbalanced"]:
    if not isinstance(data, bytes):
        data = bytes(data)  # msgspec.Raw: a view of the message it came in
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(_SQUARE, _DROP)
    if b'"' in marks:
        marks = marks.replace(b'""', b"")
        if b'"' in marks:  # strings holding brackets: keep what lies between them
            marks = b"".join(marks.split(b'"')[::2])
    for _ in range(limit):
        if not marks:
            return "within"
        inner = marks.replace(b"[]", b"")
        if len(inner) == len(marks):
            return "unbalanced"
        marks = inner
    return "too_deep" if marks else "within"


def check_nesting(data: bytes | msgspec.Raw, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`PayloadRejected` for JSON nested more than ``limit`` deep (or with brackets
    that do not balance, which is not JSON)."""
    found = _nesting(data, limit)
    if found == "too_deep":
        raise PayloadRejected("nested_too_deep", f"the JSON is nested more than {limit} levels deep")
    if found == "unbalanced":
        raise PayloadRejected("invalid_json", "the body is not JSON (its brackets do not balance)")


# --- Fathom ---------------------------------------------------------------------------------------

_FATHOM = msgspec.json.Decoder(FathomMeeting)


def decode_fathom_meeting(data: bytes | msgspec.Raw) -> FathomMeeting:
    """A Fathom meeting (webhook body or ``GET /meetings`` item), or :class:`PayloadRejected`."""
    check_nesting(data)
    meeting: FathomMeeting = _decode(_FATHOM, data, "not_a_meeting", "not a Fathom meeting")
    return meeting


def _strict_twin(cls: type[msgspec.Struct], made: dict[type, Any]) -> Any:
    """``cls`` as a Struct that refuses unknown fields, its nested Structs likewise."""
    if cls in made:
        return made[cls]
    hints = typing.get_type_hints(cls)
    fields: list[Any] = []
    for f in msgspec.structs.fields(cls):
        tp = _strict_type(hints[f.name], made)
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    rename = {f.name: f.encode_name for f in msgspec.structs.fields(cls)}
    # gc=False: a twin is only ever checked and dropped (it holds no cycle), and untracked instances
    # are a third cheaper to make (the 20 KB meeting has ~300 of them).
    made[cls] = twin = msgspec.defstruct(
        f"Strict{cls.__name__}", fields, kw_only=True, forbid_unknown_fields=True, rename=rename, gc=False
    )
    return twin


def _strict_type(tp: Any, made: dict[type, Any]) -> Any:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _strict_twin(tp, made)
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.Union[tuple(_strict_type(a, made) for a in args)]  # noqa: UP007 - built at run time
    if typing.get_origin(tp) is list:
        return list[_strict_type(args[0], made)]  # type: ignore[misc]
    return tp


# Every field of the model is typed (no ``Any``), so a body holding only documented fields is as
# deep as the model at most (5 levels): this decode cannot recurse further, and its success proves
# the depth rule without scanning the bytes. It is the whole cost of the rule for such a body.
_FATHOM_DOCUMENTED = msgspec.json.Decoder(_strict_twin(FathomMeeting, {}))


def fathom_meeting_id(data: bytes | msgspec.Raw) -> int:
    """The ``recording_id`` of bytes :func:`decode_fathom_meeting` accepts; :class:`PayloadRejected`
    for any it refuses (the same rule, one implementation).

    For the webhook path: a meeting with only documented fields is checked by one decode bounded by
    the model's own depth; any other body takes :func:`decode_fathom_meeting` itself."""
    try:
        return int(_FATHOM_DOCUMENTED.decode(data).recording_id)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return decode_fathom_meeting(data).recording_id


# --- Gong -----------------------------------------------------------------------------------------

_BUNDLE = msgspec.json.Decoder(GongCallBundle)
_CALL = msgspec.json.Decoder(GongCall)
_TRANSCRIPT = msgspec.json.Decoder(GongCallTranscript | None)


def decode_gong_bundle(data: bytes | msgspec.Raw) -> tuple[GongCall, GongCallTranscript | None, GongCallBundle]:
    """A Gong call bundle (the payload of a Gong ``RawCall``): the call, its transcript (``None``
    when Gong has none yet) and the bundle itself; or :class:`PayloadRejected`."""
    check_nesting(data, MAX_JSON_DEPTH + 1)  # the bundle adds one level around Gong's objects
    bundle = _decode(_BUNDLE, data, "not_a_call", "not a Gong call bundle")
    call = _decode(_CALL, bundle.call, "not_a_call", "not a Gong call bundle (its call)")
    transcript = (
        _decode(_TRANSCRIPT, bundle.transcript, "not_a_call", "not a Gong call bundle (its transcript)")
        if bundle.has_transcript
        else None
    )
    if transcript is not None and transcript.call_id != call.meta_data.id:
        raise PayloadRejected("not_a_call", "the transcript belongs to another call")
    return call, transcript, bundle


def _decode(decoder: msgspec.json.Decoder[Any], data: Any, code: Refusal, what: str) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise PayloadRejected(code, f"{what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PayloadRejected("invalid_json", f"the body is not JSON: {exc}") from None
    except RecursionError:  # cannot happen after check_nesting; kept so nothing else ever escapes
        raise PayloadRejected("nested_too_deep", f"{what}: nested too deep to decode") from None
