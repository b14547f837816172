"""The link vetting rule: which URL a provider sent may be handed to anyone as a link.

One rule for every service that passes a provider's URL on: the linker's answers and the
normalizer's ``MessageUpserted`` both use :func:`vet_url` with a :class:`HostAllowList` (one
setting, ``CALLSTREAM_LINK_HOSTS``). Pure functions, no I/O. Only absolute ``https`` URLs whose
host is on the allow list pass; everything else becomes ``None`` with a machine-readable reason. A
passed URL is the *re-serialised* form of what was checked (lower-case ASCII host, no userinfo,
no port), so the string a client follows is exactly the one that was vetted.

(The gateway's ``CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS`` is another rule for another question:
which provider API hosts the gateway itself may *connect to*, ports, IPs and ``http://`` included.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

LinkReason = Literal[
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
MAX_URL_LENGTH = 2048

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Characters RFC 3986 allows in a URI (unreserved, reserved and '%'); anything else in the path,
# query or fragment (quotes, angle brackets, spaces, backslashes, non-ASCII) is refused rather than
# guessed at, since browsers and parsers disagree on how to repair it.
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


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
            if not is_ascii_host(name):
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


def is_ascii_host(host: str) -> bool:
    labels = host.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


DEFAULT_LINK_ALLOW_LIST = HostAllowList(DEFAULT_LINK_HOSTS)


def _vet_host(parts: SplitResult, allow: HostAllowList) -> tuple[str | None, LinkReason | None]:
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
    if not is_ascii_host(host):
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


def vet_url(raw: object, allow: HostAllowList) -> tuple[str | None, LinkReason | None]:
    """``(canonical_url, None)`` for a URL safe to serve, else ``(None, reason)``."""
    if not isinstance(raw, str):
        return None, "not_a_string"
    if len(raw) > MAX_URL_LENGTH:
        return None, "too_long"
    return _vet_text(raw, allow)


# The same link is vetted several times per message (its metadata keys, the event's link fields,
# the linker's answer) and a linker serves the same links again and again: the last few verdicts
# are kept (at most 1,024 URLs of at most 2 kB each).
@functools.lru_cache(maxsize=1024)
def _vet_text(raw: str, allow: HostAllowList) -> tuple[str | None, LinkReason | None]:
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
