"""Standard Webhooks verification: the known-answer vector of fathom.md §4.3, agreement with the
``standardwebhooks`` reference library, and one test per rejection reason."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from callstream.gateway._credentials import webhook_key
from callstream.gateway._signature import SignatureRejected, lower_keys, sign, verify

# fathom.md §4.3
KAT_SECRET = "whsec_c3ludGhldGljLWZhdGhvbS1zZWNyZXQh"
KAT_ID = "msg_2zSynthTestVector000000001"
KAT_TS = 1767225600
KAT_BODY = b'{"recording_id":123456789,"title":"Synthetic signature test"}'
KAT_SIG = "v1,3YYwVdrf2o7CzJLi7XjPVeyPyP1PhyTsVZ9wFwHOALk="

KEY = b"0123456789abcdef0123456789abcdef"


def _headers(webhook_id: str, ts: int, signature: str, prefix: str = "webhook") -> dict[str, str]:
    return {f"{prefix}-id": webhook_id, f"{prefix}-timestamp": str(ts), f"{prefix}-signature": signature}


def test_known_answer_vector() -> None:
    key = webhook_key(KAT_SECRET)
    assert key == b"synthetic-fathom-secret!"
    assert sign(key, KAT_ID, KAT_TS, KAT_BODY) == KAT_SIG
    delivery = verify([key], _headers(KAT_ID, KAT_TS, KAT_SIG), KAT_BODY, now=KAT_TS + 10)
    assert delivery.webhook_id == KAT_ID
    assert delivery.timestamp == KAT_TS


def test_known_answer_vector_changed_body_fails() -> None:
    with pytest.raises(SignatureRejected) as err:
        verify([webhook_key(KAT_SECRET)], _headers(KAT_ID, KAT_TS, KAT_SIG), KAT_BODY + b" ", now=KAT_TS)
    assert err.value.code == "invalid_signature"


def test_signature_over_raw_bytes_not_utf8() -> None:
    body = b"\xff\xfe not utf-8 \x00"
    now = int(time.time())
    assert verify([KEY], _headers("msg_x", now, sign(KEY, "msg_x", now, body)), body, now=now).webhook_id == "msg_x"


@pytest.mark.parametrize("case", ["webhook", "svix", "Webhook", "WEBHOOK", "Svix"])
def test_header_names_any_case_and_svix_copies(case: str) -> None:
    now = int(time.time())
    body = b'{"recording_id": 1}'
    raw = {
        f"{case}-Id": "msg_1",
        f"{case}-TimeStamp": str(now),
        f"{case}-SIGNATURE": sign(KEY, "msg_1", now, body),
    }
    assert verify([KEY], lower_keys(raw), body, now=now).webhook_id == "msg_1"


def test_several_signatures_one_matches() -> None:
    now = int(time.time())
    body = b"{}"
    good = sign(KEY, "m", now, body)
    other = sign(b"another key of sixteen+ bytes", "m", now, body)
    header = f"v2,QVBJ {other} v1,not-base64!! {good} v1a,xyz"
    assert verify([KEY], _headers("m", now, header), body, now=now).webhook_id == "m"


def test_several_keys_one_matches() -> None:
    now = int(time.time())
    sig = sign(KEY, "m", now, b"{}")
    assert verify([b"old key that no longer signs!!", KEY], _headers("m", now, sig), b"{}", now=now)


def _rejected(keys: list[bytes], headers: dict[str, str], body: bytes = b"{}", now: int | None = None) -> str:
    with pytest.raises(SignatureRejected) as err:
        verify(keys, headers, body, now=now if now is not None else int(time.time()))
    return err.value.code


def test_rejects_without_a_secret() -> None:
    now = int(time.time())
    assert _rejected([], _headers("m", now, sign(KEY, "m", now, b"{}"))) == "no_webhook_secret"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_rejects_missing_header(missing: str) -> None:
    now = int(time.time())
    headers = _headers("m", now, sign(KEY, "m", now, b"{}"))
    del headers[missing]
    assert _rejected([KEY], headers) == "missing_signature_headers"


@pytest.mark.parametrize("value", ["soon", "1.5e9", "-5", "", "12345678901234"])
def test_rejects_bad_timestamp(value: str) -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": value, "webhook-signature": "v1,AAAA"}
    assert _rejected([KEY], headers) in ("invalid_timestamp", "missing_signature_headers")


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_rejects_timestamp_outside_tolerance(offset: int) -> None:
    now = int(time.time())
    ts = now + offset
    assert _rejected([KEY], _headers("m", ts, sign(KEY, "m", ts, b"{}")), now=now) == "stale_timestamp"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_accepts_timestamp_at_tolerance_edges(offset: int) -> None:
    now = int(time.time())
    ts = now + offset
    assert verify([KEY], _headers("m", ts, sign(KEY, "m", ts, b"{}")), b"{}", now=now)


def test_tolerance_is_configurable() -> None:
    now = int(time.time())
    ts = now - 60
    headers = _headers("m", ts, sign(KEY, "m", ts, b"{}"))
    with pytest.raises(SignatureRejected):
        verify([KEY], headers, b"{}", now=now, tolerance_seconds=30)
    assert verify([KEY], headers, b"{}", now=now, tolerance_seconds=90)


def test_rejects_wrong_key_id_or_body() -> None:
    now = int(time.time())
    sig = sign(KEY, "m", now, b"{}")
    assert _rejected([b"some other key, 24 bytes"], _headers("m", now, sig)) == "invalid_signature"
    assert _rejected([KEY], _headers("n", now, sig)) == "invalid_signature"
    assert _rejected([KEY], _headers("m", now, sig), body=b"{ }") == "invalid_signature"
    assert _rejected([KEY], _headers("m", now, sig.replace("v1,", "v2,"))) == "invalid_signature"


def test_rejects_signature_for_another_timestamp() -> None:
    now = int(time.time())
    assert _rejected([KEY], _headers("m", now, sign(KEY, "m", now - 1, b"{}"))) == "invalid_signature"


def test_bad_secret_format() -> None:
    with pytest.raises(ValueError):
        webhook_key("whsec_***")
    with pytest.raises(ValueError):
        webhook_key("whsec_" + base64.b64encode(b"short").decode())


_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
_bodies = st.text(max_size=2000)
_keys = st.binary(min_size=16, max_size=64)
# Stay two seconds away from the ±300 s edges: the reference reads the clock itself.
_offsets = st.one_of(st.integers(-298, 298), st.integers(302, 100_000), st.integers(-100_000, -302))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=_keys, webhook_id=_ids, body=_bodies, offset=_offsets, tamper=st.sampled_from(["none", "body", "id", "sig"]))
def test_agrees_with_standardwebhooks(key: bytes, webhook_id: str, body: str, offset: int, tamper: str) -> None:
    reference = Webhook(key)
    now = int(time.time())
    ts = now + offset
    signature = reference.sign(webhook_id, datetime.fromtimestamp(ts, tz=UTC), body)
    raw = body.encode()
    headers = _headers(webhook_id, ts, signature)
    if tamper == "body":
        raw += b"x"
    elif tamper == "id":
        headers["webhook-id"] = webhook_id + "x"
    elif tamper == "sig":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"\x00" * 32).decode()
    try:
        reference.verify(raw, headers, json_parse=False)
        expected = True
    except WebhookVerificationError:
        expected = False
    try:
        verify([key], headers, raw, now=time.time())
        ours = True
    except SignatureRejected:
        ours = False
    assert ours == expected
    assert ours == (tamper == "none" and abs(offset) <= 300)
