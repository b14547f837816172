"""The outbound URL rule: which provider API hosts and webhook destinations the gateway accepts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callstream.gateway import Settings
from callstream.gateway._outbound import (
    DEFAULT_ALLOWED_API_HOSTS,
    AllowedHost,
    UrlNotAllowed,
    check_api_url,
    check_public_url,
    parse_allowed_hosts,
)

DEFAULTS = parse_allowed_hosts(DEFAULT_ALLOWED_API_HOSTS)
WITH_FAKES = parse_allowed_hosts(DEFAULT_ALLOWED_API_HOSTS + ",http://127.0.0.1,http://[::1]:8080,fake.test:8443")


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://api.fathom.ai/external/v1", "https://api.fathom.ai/external/v1"),
        ("https://api.fathom.ai/external/v1/", "https://api.fathom.ai/external/v1"),
        ("https://api.gong.io", "https://api.gong.io"),
        ("https://us-48213.api.gong.io", "https://us-48213.api.gong.io"),  # per-tenant host (gong.md §1.1)
        ("https://company-17.api.gong.io/v2", "https://company-17.api.gong.io/v2"),
        ("HTTPS://US-55616.API.GONG.IO", "HTTPS://US-55616.API.GONG.IO"),  # host names are case-insensitive
        ("https://api.gong.io.:443", "https://api.gong.io.:443"),  # the absolute form of the same name
    ],
)
def test_provider_hosts_of_the_default_list_are_accepted(url: str, stored: str) -> None:
    assert check_api_url(url, DEFAULTS) == stored


@pytest.mark.parametrize(
    "url",
    [
        "http://api.gong.io",  # https only unless the entry says http://
        "http://us-48213.api.gong.io/v2",
        "https://api.gong.io.evil.example",  # a suffix of the allowed name is not the name
        "https://evilapi.gong.io",
        "https://gong.io",
        "https://app.gong.io",
        "https://api.fathom.ai.evil.example",
        "https://fathom.video",
        "https://127.0.0.1",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/",
        "https://localhost:5432",
        "https://user:pw@api.gong.io",  # userinfo
        "https://api.gong.io@169.254.169.254/",  # userinfo hiding the real host
        "https://api.gong.io\\@evil.example",
        "https://api.gong.io/v2?redirect=http://x",
        "https://api.gong.io/#frag",
        "https://api.gong.io:99999",
        "ftp://api.gong.io",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//api.gong.io",
        "api.gong.io",
        "",
        "https://",
        "https://exa mple.api.gong.io",
        "https://a_b.api.gong.io",
    ],
)
def test_anything_else_is_refused_by_the_default_list(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_api_url(url, DEFAULTS)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:43123/external/v1",  # any port: the entry names none
        "https://127.0.0.1:1",
        "http://127.1:9000",  # the resolver's reading of legacy IPv4 forms
        "http://2130706433:9000",
        "http://0x7f.0.0.1:9000",
        "http://[::1]:8080/",
        "https://fake.test:8443",
    ],
)
def test_explicit_entries_allow_the_fakes(url: str) -> None:
    assert check_api_url(url, WITH_FAKES) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:9000",  # only the address named
        "http://2130706434",
        "http://[::1]:8081/",  # the entry names its port
        "http://fake.test:8443",  # no http:// in that entry
        "https://fake.test",
        "http://localhost:9000",  # a name is not the address it may resolve to
    ],
)
def test_explicit_entries_allow_nothing_more(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_api_url(url, WITH_FAKES)


def test_the_message_names_the_host_and_the_setting() -> None:
    with pytest.raises(UrlNotAllowed) as refused:
        check_api_url("https://169.254.169.254", DEFAULTS)
    assert "169.254.169.254" in str(refused.value)
    assert "CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS" in str(refused.value)


def test_parsing_the_allow_list() -> None:
    assert parse_allowed_hosts(" api.fathom.ai , *.API.gong.io,,http://127.0.0.1:8080 ") == (
        AllowedHost("api.fathom.ai", plain_http=False, port=None),
        AllowedHost("*.api.gong.io", plain_http=False, port=None),
        AllowedHost("127.0.0.1", plain_http=True, port=8080),
    )
    assert parse_allowed_hosts("") == ()
    assert parse_allowed_hosts("http://2130706433") == (AllowedHost("127.0.0.1", plain_http=True, port=None),)


@pytest.mark.parametrize(
    "entry", ["*", "*.10.0.0.1", "api.*.gong.io", "ftp://x.test", "x.test/path", "u@x.test", "x.test?q", "a b"]
)
def test_entries_that_say_more_than_a_host_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed host entry"):
        parse_allowed_hosts(entry)


def test_an_empty_list_allows_no_override() -> None:
    with pytest.raises(UrlNotAllowed):
        check_api_url("https://api.gong.io", ())


@pytest.mark.parametrize(
    "url", ["https://gateway.example.com", "https://hooks.example.test/", "https://gw.example.com:8443/base"]
)
def test_public_webhook_destinations_over_https_are_accepted(url: str) -> None:
    assert check_public_url(url, DEFAULTS) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://gateway.example.com",  # Fathom would send call content in the clear
        "https://10.0.0.5",
        "https://[fd00::1]",
        "https://localhost",
        "https://intranet",
        "https://u:p@gateway.example.com",
        "https://gateway.example.com/?x=1",
        "gopher://gateway.example.com",
    ],
)
def test_other_webhook_destinations_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_public_url(url, DEFAULTS)


def test_a_listed_http_destination_is_accepted() -> None:
    assert check_public_url("http://127.0.0.1:8080", WITH_FAKES) == "http://127.0.0.1:8080"


def _settings(**values: str) -> Settings:
    return Settings(
        database_url="postgresql://x@h/db", nats_url="nats://h:4222", CALLSTREAM_SECRET_KEY="k1:" + "A" * 43, **values
    )


def test_the_setting_defaults_to_the_provider_hosts_and_is_checked_at_start() -> None:
    assert _settings().api_host_allow_list() == DEFAULTS
    custom = _settings(CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS="http://127.0.0.1")
    assert custom.api_host_allow_list() == (AllowedHost("127.0.0.1", plain_http=True, port=None),)
    with pytest.raises(ValidationError, match="allowed host entry"):
        _settings(CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS="api.gong.io,*")
