"""CALLSTREAM_GATEWAY_RETURN_URL_ALLOW and a connect session's return_url (pure)."""

from __future__ import annotations

import pytest

from callstream.gateway._outbound import UrlNotAllowed, check_return_url, parse_return_hosts


def test_unset_allows_nothing() -> None:
    with pytest.raises(UrlNotAllowed):
        check_return_url("https://app.example.test/done", parse_return_hosts(""))


@pytest.mark.parametrize("entry", ["http://app.example.test", "http://*.example.test", "http://10.0.0.1"])
def test_plain_http_only_to_the_loopback(entry: str) -> None:
    with pytest.raises(ValueError, match="plain http"):
        parse_return_hosts(entry)


def test_entries_and_urls() -> None:
    allowed = parse_return_hosts("app.example.test, *.customer.test, http://localhost:3000, http://127.0.0.1")
    assert check_return_url("https://app.example.test/a?b=c", allowed) == "https://app.example.test/a?b=c"
    assert check_return_url("https://x.customer.test/", allowed)
    assert check_return_url("http://localhost:3000/cb", allowed)
    assert check_return_url("http://127.0.0.1:9999/cb", allowed)
    for refused in (
        "http://app.example.test/",
        "https://customer.test/",
        "http://localhost:4000/",
        "https://app.example.test/#x",
        "https://u:p@app.example.test/",
        "ftp://app.example.test/",
        "https://app.example.test/" + "a" * 2000,
    ):
        with pytest.raises(UrlNotAllowed):
            check_return_url(refused, allowed)
