"""Link resolution: which URL, if any, is the original of a call, and is it safe to hand out.

Pure functions, no I/O. Only absolute ``https`` URLs whose host is on the allow list are ever
served; everything else becomes ``url: None`` with a machine-readable ``reason``. A served URL is
the *re-serialised* form of what was checked (lower-case ASCII host, no userinfo, no port), so the
string a client follows is exactly the one this module vetted.
"""

from __future__ import annotations

import re
from typing import Any, Literal
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

    @classmethod
    def from_metadata(
        cls, *, message_id: str, workspace_id: str, source: Source, external_id: str, version: int, metadata: Any
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
        )


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


class MomentLink(msgspec.Struct, kw_only=True, frozen=True):
    """A link to a moment of the recording. ``moment`` is false when the provider has no verified
    deep-link format: ``url`` is then the plain link to the call."""

    url: str | None
    kind: Kind
    origin: LinkOrigin | None
    reason: Reason | None
    moment: bool
    t: int


def moment_link(facts: LinkFacts, allow: HostAllowList, t: int, gong_host: str | None = None) -> MomentLink:
    """Fathom: ``url#t=<seconds>``, the form of Fathom's own action-item playback links
    (``recording_playback_url``), built on the call page ``url``; whether share links honour
    ``#t=`` is unverified, so they are never used for moments. Gong: the call link, ``moment``
    false (its ``&highlights=`` deep links are undocumented)."""
    if facts.source == "fathom" and _present(facts.url):
        url, _ = vet_url(facts.url, allow)
        if url is not None:
            base = urlunsplit(urlsplit(url)._replace(fragment=""))
            return MomentLink(
                url=f"{base}#t={t}", kind="recording", origin="metadata.url", reason=None, moment=True, t=t
            )
    link = resolve_link(facts, allow, gong_host)
    return MomentLink(url=link.url, kind=link.kind, origin=link.origin, reason=link.reason, moment=False, t=t)
