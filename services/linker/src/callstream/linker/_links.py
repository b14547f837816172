"""Link resolution: which URL, if any, is the original of a call, and is it safe to hand out.

Pure functions, no I/O. Only absolute ``https`` URLs whose host is on the allow list are ever
served; everything else becomes ``url: None`` with a machine-readable ``reason``. A served URL is
the *re-serialised* form of what was checked (lower-case ASCII host, no userinfo, no port), so the
string a client follows is exactly the one this module vetted.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import msgspec

# The vetting rule itself is shared with the normalizer (its MessageUpserted links pass the same
# rule): it lives in contracts, and is re-exported here under the names this service always used.
from callstream.contracts import (
    DEFAULT_LINK_HOSTS,
    MAX_URL_LENGTH,
    HostAllowList,
    Source,
    is_ascii_host,
    vet_url,
)
from callstream.contracts import LinkReason as Reason

__all__ = [
    "DEFAULT_LINK_HOSTS",
    "GONG_DEFAULT_HOST",
    "MAX_URL_LENGTH",
    "HostAllowList",
    "Kind",
    "Link",
    "LinkFacts",
    "LinkOrigin",
    "MomentLink",
    "MomentReason",
    "Reason",
    "gong_host_of",
    "moment_link",
    "needs_gong_host",
    "resolve_link",
    "vet_url",
]

Kind = Literal["recording", "call"]
LinkOrigin = Literal["metadata.recording_url", "metadata.url", "constructed"]

GONG_DEFAULT_HOST = "app.gong.io"

_KIND: dict[str, Kind] = {"fathom": "recording", "gong": "call"}
_GONG_CALL_ID = re.compile(r"^[0-9]{1,20}$")


class Link(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Where the original of a call is. ``url`` is null when nothing safe can be served; ``reason``
    then says why, and ``origin`` which metadata key (or construction) it was taken from."""

    url: str | None
    kind: Kind
    origin: LinkOrigin | None
    reason: Reason | None


class LinkFacts(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What resolution needs of one message: its identity and the link-bearing metadata keys.

    ``gc=False``: the hot-link cache holds up to 100,000 of these; untracked by the cyclic
    garbage collector (they hold only JSON scalars and can form no cycle), they add nothing to
    the full collections that otherwise stall every request in flight."""

    message_id: str
    workspace_id: str
    source: Source
    external_id: str
    version: int = 1
    recording_url: Any = None
    share_url: Any = None
    url: Any = None
    call_id: Any = None
    link_refused: Any = None  # the normalizer's reason when it nulled a link it could not serve
    deleted_reason: str | None = None  # a tombstone: gone at the provider, erased or past retention

    @classmethod
    def from_metadata(
        cls,
        *,
        message_id: str,
        workspace_id: str,
        source: Source,
        external_id: str,
        version: int,
        metadata: Any,
        deleted_reason: str | None = None,
    ) -> LinkFacts:
        meta = metadata if isinstance(metadata, dict) else {}
        return cls(
            message_id=message_id,
            workspace_id=workspace_id,
            source=source,
            external_id=external_id,
            version=version,
            recording_url=meta.get("recording_url"),
            share_url=meta.get("share_url"),
            url=meta.get("url"),
            call_id=meta.get("call_id"),
            link_refused=meta.get("link_refused"),
            deleted_reason=deleted_reason,
        )


# The reasons vet_url gives for a URL it refuses: the only values ``link_refused`` may answer with.
_REFUSALS = frozenset(get_args(Reason)) - {"no_link"}


def _present(value: object) -> bool:
    return value is not None and value != ""


def resolve_link(facts: LinkFacts, allow: HostAllowList, gong_host: str | None = None) -> Link:
    """The link of one message.

    Fathom: ``recording_url`` (the share link; ``share_url`` is read as its alias), else ``url``.
    Gong: ``metaData.url`` (stored as ``url``), else ``https://<host>/call?id=<call_id>`` with the
    app host last seen for the workspace (``gong_host``), else ``app.gong.io``.
    The first *present* candidate decides: a present but unsafe value is refused with its reason
    and never papered over by a later candidate, so tampered metadata is visible, not hidden.
    """
    kind = _KIND[facts.source]
    candidates: list[tuple[LinkOrigin, object]]
    if facts.source == "fathom":
        recording = facts.recording_url if _present(facts.recording_url) else facts.share_url
        candidates = [("metadata.recording_url", recording), ("metadata.url", facts.url)]
    else:
        candidates = [("metadata.url", facts.url)]
    for origin, value in candidates:
        if _present(value):
            url, reason = vet_url(value, allow)
            return Link(url=url, kind=kind, origin=origin, reason=reason)
    refused = facts.link_refused
    if isinstance(refused, str) and refused in _REFUSALS:  # the link as sent was refused when stored
        return Link(url=None, kind=kind, origin=candidates[0][0], reason=refused)  # type: ignore[arg-type]
    if facts.source == "gong":
        return _constructed_gong_link(facts, allow, gong_host)
    return Link(url=None, kind=kind, origin=None, reason="no_link")


def needs_gong_host(facts: LinkFacts) -> bool:
    """Whether resolving ``facts`` may construct a Gong link (and so needs the workspace's host)."""
    return facts.source == "gong" and not _present(facts.url)


def _constructed_gong_link(facts: LinkFacts, allow: HostAllowList, gong_host: str | None) -> Link:
    call_id = facts.call_id if _present(facts.call_id) else facts.external_id
    if isinstance(call_id, int) and not isinstance(call_id, bool):
        call_id = str(call_id)
    if not isinstance(call_id, str) or not _GONG_CALL_ID.match(call_id):
        return Link(url=None, kind="call", origin="constructed", reason="invalid_call_id")
    # A stored host that is not itself an allowed Gong app host is bad data: use the default.
    host = gong_host.lower() if gong_host and is_ascii_host(gong_host.lower()) else None
    if host is None or not allow.allows(host):
        host = GONG_DEFAULT_HOST
    url, reason = vet_url(f"https://{host}/call?id={call_id}", allow)
    return Link(url=url, kind="call", origin="constructed", reason=reason)


def gong_host_of(url: object, allow: HostAllowList) -> str | None:
    """The app host of a safe Gong call URL (what the normalizer records per workspace)."""
    safe, _ = vet_url(url, allow)
    return urlsplit(safe).hostname if safe else None


MomentReason = Reason | Literal["moment_unverified"]


class MomentLink(msgspec.Struct, kw_only=True, frozen=True):
    """A link to a moment of the recording. ``moment`` is false when no moment was asked for or
    the provider has no verified moment form: ``url`` is then the plain link to the call, and
    ``reason`` ``moment_unverified`` when a served link could not be made to point at ``t``."""

    url: str | None
    kind: Kind
    origin: LinkOrigin | None
    reason: MomentReason | None
    moment: bool
    t: float | None


def _seconds(t: float) -> str:
    """``645``, ``58.5``, ``1058.9999``: Fathom takes decimal seconds; no float noise, no ``.0``."""
    text = f"{t:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _with_timestamp(url: str, t: float) -> str:
    """``url`` with ``timestamp=<t>`` as its last query parameter: an earlier ``timestamp`` and
    a fragment (``#t=``, which Fathom never honoured) are dropped, other parameters kept."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and not p.startswith("timestamp=")]
    kept.append(f"timestamp={_seconds(t)}")
    return urlunsplit(parts._replace(query="&".join(kept), fragment=""))


def moment_link(facts: LinkFacts, allow: HostAllowList, t: float | None, gong_host: str | None = None) -> MomentLink:
    """The message's link (:func:`resolve_link`), pointed at ``t`` seconds where the source has a
    known moment form. The one implementation behind ``/v1/messages/{id}/link?t=`` and the data
    points' evidence links.

    Fathom: ``?timestamp=<seconds>`` (decimals allowed) on the share or call URL, whichever the
    message links to (``shared/providers/fathom.md``, addendum: its API's own playback URLs and
    its transcript exports use it; ``#t=`` and ``?t=`` appear in no working source). Gong: the
    plain call link with ``reason: moment_unverified`` (its ``&highlights=`` form is an
    undocumented example whose seeking nobody has verified)."""
    link = resolve_link(facts, allow, gong_host)
    if t is None or link.url is None:
        return MomentLink(url=link.url, kind=link.kind, origin=link.origin, reason=link.reason, moment=False, t=t)
    if facts.source == "fathom":
        # Re-vetted: the parameter is ours, but what is served is always what was checked.
        url, reason = vet_url(_with_timestamp(link.url, t), allow)
        if url is not None:
            return MomentLink(url=url, kind=link.kind, origin=link.origin, reason=None, moment=True, t=t)
        return MomentLink(url=link.url, kind=link.kind, origin=link.origin, reason=reason, moment=False, t=t)
    return MomentLink(url=link.url, kind=link.kind, origin=link.origin, reason="moment_unverified", moment=False, t=t)
