"""The resolution table: every origin, and every unsafe form refused with its reason."""

from __future__ import annotations

from typing import Any

import pytest

from callstream.linker._links import (
    DEFAULT_LINK_HOSTS,
    HostAllowList,
    LinkFacts,
    moment_link,
    resolve_link,
    vet_url,
)

ALLOW = HostAllowList(DEFAULT_LINK_HOSTS)
GONG_ID = "5520183947712650031"


def fathom(**metadata: Any) -> LinkFacts:
    return LinkFacts.from_metadata(
        message_id="m1", workspace_id="w", source="fathom", external_id="884120457", version=1, metadata=metadata
    )


def gong(external_id: str = GONG_ID, **metadata: Any) -> LinkFacts:
    return LinkFacts.from_metadata(
        message_id="m2", workspace_id="w", source="gong", external_id=external_id, version=1, metadata=metadata
    )


SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
CALL = "https://fathom.video/calls/884120457"
GONG_URL = f"https://us-48213.app.gong.io/call?id={GONG_ID}"

# (case, facts, gong host, expected url, origin, reason)
RESOLUTION = [
    ("fathom recording_url", fathom(recording_url=SHARE, url=CALL), None, SHARE, "metadata.recording_url", None),
    ("fathom share_url alias", fathom(share_url=SHARE, url=CALL), None, SHARE, "metadata.recording_url", None),
    ("fathom url fallback", fathom(url=CALL), None, CALL, "metadata.url", None),
    ("fathom empty recording_url", fathom(recording_url="", url=CALL), None, CALL, "metadata.url", None),
    ("fathom nothing", fathom(), None, None, None, "no_link"),
    (
        "fathom unsafe first wins",
        fathom(recording_url="javascript:alert(1)", url=CALL),
        None,
        None,
        "metadata.recording_url",
        "not_https",
    ),
    ("gong metaData.url", gong(url=GONG_URL), None, GONG_URL, "metadata.url", None),
    (
        "gong bare app host",
        gong(url=f"https://app.gong.io/call?id={GONG_ID}"),
        None,
        f"https://app.gong.io/call?id={GONG_ID}",
        "metadata.url",
        None,
    ),
    ("gong constructed, host seen", gong(call_id=GONG_ID), "us-48213.app.gong.io", GONG_URL, "constructed", None),
    (
        "gong constructed, default host",
        gong(call_id=GONG_ID),
        None,
        f"https://app.gong.io/call?id={GONG_ID}",
        "constructed",
        None,
    ),
    ("gong constructed from external id", gong(), None, f"https://app.gong.io/call?id={GONG_ID}", "constructed", None),
    (
        "gong constructed, integer call id",
        gong(call_id=int(GONG_ID)),
        None,
        f"https://app.gong.io/call?id={GONG_ID}",
        "constructed",
        None,
    ),
    (
        "gong constructed, stored host foreign",
        gong(call_id=GONG_ID),
        "evil.example",
        f"https://app.gong.io/call?id={GONG_ID}",
        "constructed",
        None,
    ),
    (
        "gong constructed, bad call id",
        gong(external_id="x", call_id="12; DROP"),
        None,
        None,
        "constructed",
        "invalid_call_id",
    ),
    ("gong unsafe url", gong(url="http://us-1.app.gong.io/call?id=1"), None, None, "metadata.url", "not_https"),
]


@pytest.mark.parametrize(
    ("facts", "host", "url", "origin", "reason"), [c[1:] for c in RESOLUTION], ids=[c[0] for c in RESOLUTION]
)
def test_resolution(
    facts: LinkFacts, host: str | None, url: str | None, origin: str | None, reason: str | None
) -> None:
    link = resolve_link(facts, ALLOW, host)
    assert (link.url, link.origin, link.reason) == (url, origin, reason)
    assert link.kind == ("recording" if facts.source == "fathom" else "call")


UNSAFE = [
    ("javascript", "javascript:alert(document.cookie)", "not_https"),
    ("javascript upper", "JaVaScRiPt:alert(1)", "not_https"),
    ("javascript with tab", "java\tscript:alert(1)", "unsafe_characters"),
    ("data", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "not_https"),
    ("vbscript", "vbscript:msgbox(1)", "not_https"),
    ("http", "http://fathom.video/share/abc", "not_https"),
    ("ftp", "ftp://fathom.video/x", "not_https"),
    ("relative", "/share/abc", "not_absolute"),
    ("scheme relative", "//fathom.video/share/abc", "not_absolute"),
    ("no slashes", "https:fathom.video/share/abc", "not_absolute"),
    ("empty host", "https:///share/abc", "not_absolute"),
    ("foreign host", "https://evil.example/share/abc", "host_not_allowed"),
    ("suffix lookalike", "https://evilfathom.video/share/abc", "host_not_allowed"),
    ("allowed host as subdomain", "https://fathom.video.evil.example/x", "host_not_allowed"),
    ("gong suffix lookalike", "https://evilapp.gong.io/call?id=1", "host_not_allowed"),
    ("gong parent", "https://gong.io/call?id=1", "host_not_allowed"),
    ("gong app host as subdomain", "https://app.gong.io.evil.example/call?id=1", "host_not_allowed"),
    ("fathom subdomain not listed", "https://www.fathom.video/x", "host_not_allowed"),
    ("trailing dot", "https://fathom.video./share/abc", "invalid_host"),
    ("userinfo", "https://fathom.video@evil.example/share/abc", "userinfo_not_allowed"),
    ("userinfo with password", "https://user:pw@fathom.video/share/abc", "userinfo_not_allowed"),
    ("backslash userinfo", "https://fathom.video\\@evil.example/", "unsafe_characters"),
    ("backslash path", "https://evil.example\\fathom.video/", "unsafe_characters"),
    ("percent-encoded host", "https://fathom%2evideo/x", "invalid_host"),
    ("IDN homograph (Cyrillic i)", "https://fathom.v\u0456deo/share/abc", "idn_host"),
    ("IDN homograph (Cyrillic a)", "https://\u0430pp.gong.io/call?id=1", "idn_host"),
    ("punycode homograph", "https://fathom.xn--vdeo-l9d/share/abc", "idn_host"),
    ("punycode homograph, gong", "https://xn--pp-6kc.gong.io/call?id=1", "idn_host"),
    ("full-width letters", "https://\uff46athom.video/x", "idn_host"),
    ("invalid punycode", "https://xn--a.video/x", "invalid_host"),
    ("ip address", "https://127.0.0.1/x", "host_not_allowed"),
    ("ipv6 literal", "https://[::1]/x", "invalid_host"),
    ("other port", "https://fathom.video:8443/x", "port_not_allowed"),
    ("bad port", "https://fathom.video:99999/x", "port_not_allowed"),
    ("leading space", " https://fathom.video/x", "unsafe_characters"),
    ("newline", "https://fathom.video/x\nSet-Cookie: a=b", "unsafe_characters"),
    ("nul", "https://fathom.video/x\x00", "unsafe_characters"),
    ("quote in path", 'https://fathom.video/x"onmouseover="alert(1)', "unsafe_characters"),
    ("angle brackets", "https://fathom.video/<script>", "unsafe_characters"),
    ("non-ASCII path", "https://fathom.video/caf\u00e9", "unsafe_characters"),
    ("too long", "https://fathom.video/" + "a" * 3000, "too_long"),
    ("not a string", 12345, "not_a_string"),
    ("a dict", {"href": "https://fathom.video/x"}, "not_a_string"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in UNSAFE], ids=[c[0] for c in UNSAFE])
def test_unsafe_forms_are_refused(raw: object, reason: str) -> None:
    assert vet_url(raw, ALLOW) == (None, reason)
    link = resolve_link(fathom(recording_url=raw), ALLOW)
    assert (link.url, link.reason) == (None, reason)


@pytest.mark.parametrize(
    ("raw", "served"),
    [
        (SHARE, SHARE),
        ("HTTPS://Fathom.Video/share/abc", "https://fathom.video/share/abc"),
        ("https://fathom.video:443/calls/1#t=5", "https://fathom.video/calls/1#t=5"),
        ("https://us-48213.app.gong.io/call?id=1", "https://us-48213.app.gong.io/call?id=1"),
        ("https://acme.app.gong.io/call?id=1&x=%20", "https://acme.app.gong.io/call?id=1&x=%20"),
    ],
)
def test_safe_urls_are_served_in_canonical_form(raw: str, served: str) -> None:
    assert vet_url(raw, ALLOW) == (served, None)


def test_allow_list_is_configurable() -> None:
    allow = HostAllowList.parse("fathom.video, *.example.org")
    assert vet_url("https://a.b.example.org/x", allow) == ("https://a.b.example.org/x", None)
    assert vet_url("https://example.org/x", allow) == (None, "host_not_allowed")
    assert vet_url(GONG_URL, allow) == (None, "host_not_allowed")
    # Gong links are constructed only on allowed hosts.
    assert resolve_link(gong(), allow).reason == "host_not_allowed"


@pytest.mark.parametrize(
    "bad", ["", "*", "*.", "evil.example/x", "http://fathom.video", "fath\u00f6m.video", "localhost"]
)
def test_allow_list_rejects_bad_patterns(bad: str) -> None:
    with pytest.raises(ValueError):
        HostAllowList.parse(bad)


def test_fathom_moment_is_timestamp_on_the_share_link() -> None:
    # shared/providers/fathom.md, addendum: moments are ?timestamp=<seconds> (never #t=), on the
    # share or the call URL; the moment builds on the same link the message answers with.
    m = moment_link(fathom(recording_url=SHARE, url=CALL), ALLOW, 645)
    assert (m.url, m.moment, m.origin, m.t, m.reason) == (
        SHARE + "?timestamp=645",
        True,
        "metadata.recording_url",
        645,
        None,
    )


def test_fathom_moment_on_the_call_url_replaces_old_moments() -> None:
    m = moment_link(fathom(url=CALL + "?timestamp=1&x=y#t=1"), ALLOW, 58.5)
    assert (m.url, m.moment, m.origin) == (CALL + "?x=y&timestamp=58.5", True, "metadata.url")


def test_fathom_moment_keeps_decimals_and_drops_float_noise() -> None:
    assert moment_link(fathom(url=CALL), ALLOW, 1058.9999).url == CALL + "?timestamp=1058.9999"
    assert moment_link(fathom(url=CALL), ALLOW, 24.0).url == CALL + "?timestamp=24"


def test_fathom_moment_without_any_url_is_no_link() -> None:
    m = moment_link(fathom(), ALLOW, 30)
    assert (m.url, m.moment, m.reason) == (None, False, "no_link")


def test_gong_moment_is_the_call_link_without_a_moment() -> None:
    m = moment_link(gong(url=GONG_URL), ALLOW, 30)
    assert (m.url, m.moment, m.kind, m.reason) == (GONG_URL, False, "call", "moment_unverified")


def test_moment_of_unsafe_fathom_url_is_refused() -> None:
    m = moment_link(fathom(url="javascript:alert(1)"), ALLOW, 30)
    assert (m.url, m.moment, m.reason) == (None, False, "not_https")


def test_a_link_the_normalizer_refused_keeps_its_reason() -> None:
    # The normalizer nulls a URL a UI must not render and says why in ``link_refused``: the
    # answer is that reason, not "no link", and for Gong not a link built from the call id either.
    refused = resolve_link(fathom(recording_url=None, url=None, link_refused="too_long"), ALLOW)
    assert (refused.url, refused.reason, refused.origin) == (None, "too_long", "metadata.recording_url")
    gong_refused = resolve_link(gong(url=None, call_id=GONG_ID, link_refused="not_https"), ALLOW)
    assert (gong_refused.url, gong_refused.reason) == (None, "not_https")
    # only vet_url's reasons are answered; anything else stored there is ignored
    assert resolve_link(fathom(link_refused="<script>"), ALLOW).reason == "no_link"
    assert resolve_link(gong(link_refused=["x"]), ALLOW).url == f"https://app.gong.io/call?id={GONG_ID}"
