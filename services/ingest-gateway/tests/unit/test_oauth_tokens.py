"""Token endpoint answers → tokens or the error they mean (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callstream.gateway._oauth import InvalidGrant, OAuthApp, OAuthError, parse_token_response

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_tokens_with_expiry_and_gong_host() -> None:
    body = b'{"access_token":"a","refresh_token":"r","expires_in":3600,"api_base_url_for_customer":"https://us-1.api.gong.io","scope":"x"}'
    tokens = parse_token_response("gong", 200, body, now=NOW)
    assert (tokens.access_token, tokens.refresh_token, tokens.api_base_url) == ("a", "r", "https://us-1.api.gong.io")
    assert tokens.expires_at == NOW + timedelta(hours=1)


def test_invalid_grant_is_its_own_error() -> None:
    with pytest.raises(InvalidGrant):
        parse_token_response(
            "gong", 400, b'{"error":"invalid_grant","error_description":"Token has been expired or revoked."}'
        )


@pytest.mark.parametrize(
    ("status", "body"), [(500, b"oops"), (401, b'{"error":"invalid_client"}'), (200, b"{}"), (200, b"nope")]
)
def test_other_failures(status: int, body: bytes) -> None:
    with pytest.raises(OAuthError) as err:
        parse_token_response("fathom", status, body)
    assert not isinstance(err.value, InvalidGrant)


def test_authorization_url_carries_state_and_redirect() -> None:
    app = OAuthApp("fathom", "cid", "csecret", "https://fathom.video/external/v1/oauth2/authorize", "t", "public_api")
    url = app.authorization_url("https://gw.example/v1/oauth/fathom/callback", "s123")
    assert url.startswith("https://fathom.video/external/v1/oauth2/authorize?")
    assert "state=s123" in url
    assert "client_id=cid" in url
    assert "response_type=code" in url
    assert "redirect_uri=https%3A%2F%2Fgw.example%2Fv1%2Foauth%2Ffathom%2Fcallback" in url
    assert "csecret" not in url
