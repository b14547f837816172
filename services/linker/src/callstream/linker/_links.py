"""Link resolution: which URL, if any, is the original of a call, and is it safe to hand out.

Pure functions, no I/O. Only absolute ``https`` URLs whose host is on the allow list are ever
served; everything else becomes ``url: None`` with a machine-readable ``reason``. A served URL is
the *re-serialised* form of what was checked (lower-case ASCII host, no userinfo, no port), so the
string a client follows is exactly the one this module vetted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna
import msgspec

from callstream.contracts import Source

Kind = Literal["recording", "call"]
LinkOrigin = Literal["metadata.recording_url", "metadata.url", "constructed"]
Reason = Literal[
    "no_link",  # the message carries nothing to link to
    "not_a_string",
    "too_long",
    "unsafe_characters",  # whitespace, control characters, backslashes, non-URL characters
    "not_absolute",  # relative or scheme-relative
    "not_https",  # http:, javascript:, data:, ...
    "userinfo_not_allowed",  # https://fathom.video@evil.example/
    "port_not_allowed",
    "invalid_host",
    "idn_host",  # internationalised (possibly homograph) host name
    "host_not_allowed",
    "invalid_call_id",
]

DEFAULT_LINK_HOSTS = ("fathom.video", "app.gong.io", "*.app.gong.io")
GONG_DEFAULT_HOST = "app.gong.io"
MAX_URL_LENGTH = 2048

_KIND: dict[str, Kind] = {"fathom": "recording", "gong": "call"}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_GONG_CALL_ID = re.compile(r"^[0-9]{1,20}$")
# Characters RFC 3986 allows in a URI (unreserved, reserved and '%'); anything else in the path,
# query or fragment (quotes, angle brackets, spaces, backslashes, non-ASCII) is refused rather than
# guessed at, since browsers and parsers disagree on how to repair it.
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


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


class HostAllowList:
    """Hosts links may point at: exact names (``fathom.video``) and wildcards (``*.app.gong.io``,
    any host *below* ``app.gong.io``, not ``app.gong.io`` itself).

    A plain ``host.endswith("app.gong.io")`` is not enough: ``evilapp.gong.io`` and
    ``app.gong.io.evil.example`` would pass or nearly pass it, ``fathom.video.`` (trailing dot) is
    the same DNS name written differently, and the host must be the one a browser would contact,
    not a substring of the URL (``https://fathom.video@evil.example/`` goes to evil.example,
    ``https://fathom.video\\@evil.example/`` is read differently by Python and by browsers, and
    ``fathom.v\u0456deo`` (a Cyrillic i) looks identical but is another host). So the URL is
    parsed, userinfo and odd characters are refused, the host is checked label by label in its
    ASCII form, and wildcards match only on a label boundary.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for raw in patterns:
            pattern = raw.strip().lower()
            if not pattern:
                continue
            wildcard = pattern.startswith("*.")
            name = pattern[2:] if wildcard else pattern
            if not _is_ascii_host(name):
                raise ValueError(f"{raw!r} is not a host name or *.host pattern")
            (suffixes if wildcard else exact).add(name)
        if not exact and not suffixes:
            raise ValueError("the link host allow list is empty")
        self._exact = frozenset(exact)
        self._suffixes = tuple(sorted("." + s for s in suffixes))

    @classmethod
    def parse(cls, text: str) -> HostAllowList:
        return cls(text.split(","))

    def allows(self, host: str) -> bool:
        """``host`` must already be lower-case ASCII with valid labels (see :func:`vet_url`)."""
        return host in self._exact or any(host.endswith(s) and len(host) > len(s) for s in self._suffixes)


def _is_ascii_host(host: str) -> bool:
    labels = host.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def _vet_host(parts: SplitResult, allow: HostAllowList) -> tuple[str | None, Reason | None]:
    host = parts.hostname or ""
    if not host:
        return None, "not_absolute"
    if not host.isascii():
        # IDNA (UTS #46) is what a browser applies: a host that only maps to an allowed ASCII
        # name (full-width letters) or to punycode (a homograph) was not written by the provider.
        try:
            idna.encode(host, uts46=True)
        except (idna.IDNAError, UnicodeError):
            return None, "invalid_host"
        return None, "idn_host"
    if not _is_ascii_host(host):
        return None, "invalid_host"
    if any(label.startswith("xn--") for label in host.split(".")):
        try:
            idna.decode(host)
        except (idna.IDNAError, UnicodeError):
            return None, "invalid_host"
        return None, "idn_host"
    if not allow.allows(host):
        return None, "host_not_allowed"
    return host, None


def vet_url(raw: object, allow: HostAllowList) -> tuple[str | None, Reason | None]:
    """``(canonical_url, None)`` for a URL safe to serve, else ``(None, reason)``."""
    if not isinstance(raw, str):
        return None, "not_a_string"
    if len(raw) > MAX_URL_LENGTH:
        return None, "too_long"
    # Browsers silently drop tabs and newlines inside URLs ("java\tscript:") and treat "\" as "/";
    # Python does neither, so such a URL could mean one thing here and another there.
    if _WHITESPACE_OR_CONTROL.search(raw):
        return None, "unsafe_characters"
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None, "invalid_host"
    if not parts.scheme:
        return None, "not_absolute"
    if parts.scheme != "https":
        return None, "not_https"
    if not parts.netloc:
        return None, "not_absolute"
    if "@" in parts.netloc:
        return None, "userinfo_not_allowed"
    try:
        port = parts.port
    except ValueError:
        return None, "port_not_allowed"
    if port not in (None, 443):
        return None, "port_not_allowed"
    host, reason = _vet_host(parts, allow)
    if host is None:
        return None, reason
    if not _URI_CHARS.match(parts.path + parts.query + parts.fragment):
        return None, "unsafe_characters"
    return urlunsplit(("https", host, parts.path, parts.query, parts.fragment)), None


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
    host = gong_host.lower() if gong_host and _is_ascii_host(gong_host.lower()) else None
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
