"""Our webhook check agrees with the official Fathom SDK's ``Fathom.verify_webhook`` (DESIGN.md: the
SDK is a test oracle): for ``whsec_`` secrets as Fathom hands them out, on valid and tampered
deliveries and on the known-answer vector of fathom.md §4.3."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

from fathom_python import Fathom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from callstream.gateway._credentials import webhook_key
from callstream.gateway._signature import SignatureRejected, verify

KAT_SECRET = "whsec_c3ludGhldGljLWZhdGhvbS1zZWNyZXQh"
KAT_HEADERS = {
    "webhook-id": "msg_2zSynthTestVector000000001",
    "webhook-timestamp": "1767225600",
    "webhook-signature": "v1,3YYwVdrf2o7CzJLi7XjPVeyPyP1PhyTsVZ9wFwHOALk=",
}
KAT_BODY = '{"recording_id":123456789,"title":"Synthetic signature test"}'


def _sdk_accepts(secret: str, headers: dict[str, str], body: str) -> bool:
    try:
        Fathom.verify_webhook(secret, headers, body)
    except Exception:  # the SDK raises standardwebhooks' WebhookVerificationError (or a decode error)
        return False
    return True


def _ours_accepts(secret: str, headers: dict[str, str], body: str) -> bool:
    try:
        verify([webhook_key(secret)], headers, body.encode(), now=time.time())
    except SignatureRejected:
        return False
    return True


def test_known_answer_vector_is_accepted_by_both_and_tampering_by_neither() -> None:
    # the vector's timestamp is fixed in the past: move "now" there for our check; the SDK reads the
    # clock itself, so it is asked about a freshly signed copy of the same delivery
    key = webhook_key(KAT_SECRET)
    assert verify([key], KAT_HEADERS, KAT_BODY.encode(), now=1767225600 + 1).webhook_id == KAT_HEADERS["webhook-id"]
    now = datetime.now(tz=UTC)
    fresh = {
        "webhook-id": KAT_HEADERS["webhook-id"],
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(KAT_SECRET).sign(KAT_HEADERS["webhook-id"], now, KAT_BODY),
    }
    assert _sdk_accepts(KAT_SECRET, fresh, KAT_BODY)
    assert _ours_accepts(KAT_SECRET, fresh, KAT_BODY)
    assert not _sdk_accepts(KAT_SECRET, fresh, KAT_BODY + " ")
    assert not _ours_accepts(KAT_SECRET, fresh, KAT_BODY + " ")


_secrets = st.binary(min_size=24, max_size=48).map(lambda b: "whsec_" + base64.b64encode(b).decode())
_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
# JSON objects: the SDK parses the body after checking it (a non-JSON body raises there, not in the check)
_bodies = st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=5).map(
    lambda d: json.dumps(d, ensure_ascii=False)
)
# Two seconds away from the ±300 s edges: the SDK reads the clock itself.
_offsets = st.one_of(st.integers(-298, 298), st.integers(302, 100_000), st.integers(-100_000, -302))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=_secrets,
    webhook_id=_ids,
    body=_bodies,
    offset=_offsets,
    tamper=st.sampled_from(["none", "body", "id", "sig", "other secret", "several signatures"]),
)
def test_agrees_with_the_fathom_sdk(secret: str, webhook_id: str, body: str, offset: int, tamper: str) -> None:
    at = datetime.fromtimestamp(int(time.time()) + offset, tz=UTC)
    signature = Webhook(secret).sign(webhook_id, at, body)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}
    if tamper == "body":
        body += " "  # still the same JSON, but not the signed bytes
    elif tamper == "id":
        headers["webhook-id"] = webhook_id + "x"
    elif tamper == "sig":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"\x00" * 32).decode()
    elif tamper == "other secret":
        headers["webhook-signature"] = Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).sign(
            webhook_id, at, body
        )
    elif tamper == "several signatures":  # a rotated secret: the old signature first, then the valid one
        headers["webhook-signature"] = "v1," + base64.b64encode(b"\x01" * 32).decode() + " " + signature
    sdk = _sdk_accepts(secret, headers, body)
    ours = _ours_accepts(secret, headers, body)
    assert ours == sdk
    assert ours == (tamper in ("none", "several signatures") and abs(offset) <= 300)
