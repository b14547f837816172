"""Which URLs an admin (or a provider's OAuth answer) may give the gateway. Pure: no I/O, no DNS.

``base_url`` overrides a provider's API host, and the gateway then calls it with stored provider
credentials. Left open, an admin token holder could make the gateway send those credentials to an
internal address (SSRF). So a provider API URL must name a host of the allow-list
(``CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS``) and use https, unless its entry is spelled ``http://...``
(the fakes tests and the dev stack run on 127.0.0.1). ``public_base_url`` is only sent to Fathom as a
webhook destination, never called by us, so it needs https and a public-looking DNS name, or an
explicit entry of the same list.

Allow-list entries, comma-separated: ``api.gong.io`` (that host), ``*.api.gong.io`` (any name under
it, not the name itself), ``http://127.0.0.1`` (http allowed too), optionally with ``:port``
(otherwise any port). A wildcard never matches an IP address; an IP address matches only an entry
naming that same address, so ``http://2130706433`` and ``http://127.1`` are ``127.0.0.1`` here as
they are to the resolver. Matching is a plain suffix test on the IDNA form of the host rather than
``fnmatch``, whose ``[...]`` classes and ``*`` across dots would make an entry mean more than it says.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

DEFAULT_ALLOWED_API_HOSTS = "api.fathom.ai,api.gong.io,*.api.gong.io"
_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UrlNotAllowed(ValueError):
    """The URL is malformed or names a destination the gateway may not use; the text says why."""


@dataclass(frozen=True, slots=True)
class _Host:
    name: str  # IDNA, lower case, no trailing dot; an IP address in its canonical form
    is_ip: bool


@dataclass(frozen=True, slots=True)
class AllowedHost:
    """One allow-list entry."""

    host: str  # a name, "*.<suffix>", or an IP address (canonical)
    plain_http: bool  # spelled http://: plain http is allowed as well as https
    port: int | None  # None: any port

    def matches(self, scheme: str, host: _Host, port: int | None) -> bool:
        if scheme == "http" and not self.plain_http:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return not host.is_ip and host.name.endswith(self.host[1:])
        return host.name == self.host


def _canonical_host(raw: str) -> _Host:
    """The host as the resolver will see it. Raises ``UrlNotAllowed`` for anything unusual."""
    name = raw.lower().removesuffix(".")
    if not name:
        raise UrlNotAllowed("the URL has no host")
    try:
        return _Host(str(ipaddress.ip_address(name)), True)
    except ValueError:
        pass
    # getaddrinfo reads a name whose last label is a number as IPv4 (2130706433, 127.1, 0x7f.1).
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        try:
            return _Host(socket.inet_ntoa(socket.inet_aton(name)), True)
        except OSError:
            raise UrlNotAllowed(f"{raw!r} is neither a host name nor an IP address") from None
    if not _NAME.match(name):
        raise UrlNotAllowed(f"{raw!r} is not a valid host name")
    return _Host(name, False)


@dataclass(frozen=True, slots=True)
class _Parsed:
    scheme: str
    host: _Host
    port: int | None


def _parse(value: str, field: str, *, query_ok: bool = False) -> _Parsed:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlNotAllowed(f"{field} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.is_absolute_url:
        raise UrlNotAllowed(f"{field} must be an absolute https URL")
    if url.userinfo:
        raise UrlNotAllowed(f"{field} must not carry a user name or password")
    if url.fragment or "#" in value:
        raise UrlNotAllowed(f"{field} must not have a fragment")
    if not query_ok and (url.query or "?" in value):
        raise UrlNotAllowed(f"{field} must not have a query")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise UrlNotAllowed(f"{field} has a port out of range")
    try:
        raw_host = url.raw_host.decode("ascii")  # IDNA-encoded by httpx
    except UnicodeDecodeError:
        raise UrlNotAllowed(f"{field} has a host that is not a valid name") from None
    try:
        host = _canonical_host(raw_host)
    except UrlNotAllowed as exc:
        raise UrlNotAllowed(f"{field}: {exc}") from None
    return _Parsed(url.scheme, host, url.port)


def parse_allowed_hosts(value: str) -> tuple[AllowedHost, ...]:
    """The setting's text → entries. Raises ``ValueError`` on an entry that is not one of the forms."""
    entries: list[AllowedHost] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        spelled = item if "://" in item else "https://" + item
        try:
            url = httpx.URL(spelled)
        except httpx.InvalidURL as exc:
            raise ValueError(f"allowed host entry {item!r}: {exc}") from None
        if (
            url.scheme not in ("http", "https")
            or url.userinfo
            or url.query
            or url.fragment
            or url.raw_path not in (b"", b"/")
        ):
            raise ValueError(f"allowed host entry {item!r} must be [http://]host[:port]")
        raw = url.raw_host.decode("ascii", "replace")
        wildcard = raw.startswith("*.")
        try:
            host = _canonical_host(raw.removeprefix("*."))
        except UrlNotAllowed as exc:
            raise ValueError(f"allowed host entry {item!r}: {exc}") from None
        if wildcard and host.is_ip:
            raise ValueError(f"allowed host entry {item!r}: a wildcard covers names, not IP addresses")
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError(f"allowed host entry {item!r}: port out of range")
        entries.append(AllowedHost(("*." if wildcard else "") + host.name, url.scheme == "http", url.port))
    return tuple(entries)


def _allowed(parsed: _Parsed, allowed: Sequence[AllowedHost]) -> bool:
    return any(entry.matches(parsed.scheme, parsed.host, parsed.port) for entry in allowed)


def check_api_url(value: str, allowed: Sequence[AllowedHost], field: str = "base_url") -> str:
    """A provider API base URL the gateway may call, without a trailing slash."""
    parsed = _parse(value, field)
    if not _allowed(parsed, allowed):
        what = "plain http to" if parsed.scheme == "http" else "host"
        raise UrlNotAllowed(
            f"{field}: {what} {parsed.host.name!r} is not an allowed provider API host"
            " (CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS)"
        )
    return value.rstrip("/")


def check_public_url(value: str, allowed: Sequence[AllowedHost], field: str = "public_base_url") -> str:
    """A webhook destination to register with a provider: https to a DNS name with a dot, or a
    destination the allow-list names explicitly (tests, a private dev stack)."""
    parsed = _parse(value, field)
    public = parsed.scheme == "https" and not parsed.host.is_ip and "." in parsed.host.name
    if not (public or _allowed(parsed, allowed)):
        raise UrlNotAllowed(
            f"{field} must be https to a public DNS name (or a host of CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS)"
        )
    return value.rstrip("/")


_LOOPBACK_NAMES = ("localhost",)


def _loopback(host: _Host) -> bool:
    if host.is_ip:
        return ipaddress.ip_address(host.name).is_loopback
    return host.name in _LOOPBACK_NAMES or host.name.endswith(".localhost")


def parse_return_hosts(value: str) -> tuple[AllowedHost, ...]:
    """``CALLSTREAM_GATEWAY_RETURN_URL_ALLOW``: the entries of ``parse_allowed_hosts``, where plain
    http is allowed only towards the loopback (a developer's own machine): a connect session ends by
    sending its browser there with the outcome in the query, which must not travel in clear text."""
    entries = parse_allowed_hosts(value)
    for entry in entries:
        if entry.plain_http and not (not entry.host.startswith("*.") and _loopback(_canonical_host(entry.host))):
            raise ValueError(
                f"return URL entry http://{entry.host}: plain http only to localhost or a loopback address"
            )
    return entries


def check_return_url(value: str, allowed: Sequence[AllowedHost], field: str = "return_url") -> str:
    """Where a connect session sends its browser at the end: a host of the allow-list (none when the
    list is empty), https unless its entry says http:// to the loopback; a query is kept, a fragment
    refused (the outcome is appended to the query)."""
    if len(value) > 2000:
        raise UrlNotAllowed(f"{field} is longer than 2000 characters")
    parsed = _parse(value, field, query_ok=True)
    if not _allowed(parsed, allowed):
        raise UrlNotAllowed(
            f"{field}: {parsed.scheme}://{parsed.host.name} is not an allowed return host"
            " (CALLSTREAM_GATEWAY_RETURN_URL_ALLOW)"
        )
    return value
