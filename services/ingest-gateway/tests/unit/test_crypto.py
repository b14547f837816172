"""The AES-GCM key ring: the ./dev up key form, rotation, and refusal of bad keys and moved envelopes."""

from __future__ import annotations

import base64
import secrets

import pytest

from callstream.gateway._crypto import Cipher, DecryptionError, KeyRingError, parse_key_ring


def _key(n: int = 32) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")


def test_dev_up_form_is_accepted() -> None:
    ring = parse_key_ring("k1:" + secrets.token_urlsafe(32))
    assert [(kid, len(key)) for kid, key in ring] == [("k1", 32)]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "no key"),
        ("k1", "keyid:base64urlkey"),
        ("k1:" + _key(16), "16 bytes"),
        ("k1:" + _key(33), "33 bytes"),
        ("k1:%%%", "32"),
        ("bad id!:" + _key(), "keyid"),
        (f"k1:{_key()},k1:{_key()}", "twice"),
    ],
)
def test_bad_rings_are_refused_with_a_reason(value: str, fragment: str) -> None:
    with pytest.raises(KeyRingError) as err:
        parse_key_ring(value)
    assert fragment in str(err.value)


def test_round_trip_and_associated_data() -> None:
    cipher = Cipher.from_setting("k1:" + _key())
    sealed = cipher.encrypt(b"fathom-api-key", "integration:a:credentials")
    assert b"fathom-api-key" not in sealed
    assert cipher.decrypt(sealed, "integration:a:credentials") == b"fathom-api-key"
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed, "integration:b:credentials")  # copied into another row
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DecryptionError):
        cipher.decrypt(tampered, "integration:a:credentials")


def test_rotation_old_envelopes_still_open_new_ones_use_the_first_key() -> None:
    old, new = "k1:" + _key(), "k2:" + _key()
    before = Cipher.from_setting(old).encrypt(b"secret", "aad")
    rotated = Cipher.from_setting(f"{new},{old}")
    assert rotated.decrypt(before, "aad") == b"secret"
    assert rotated.key_id_of(before) == "k1"
    assert rotated.key_id_of(rotated.encrypt(b"secret", "aad")) == "k2"
    with pytest.raises(DecryptionError) as err:
        Cipher.from_setting(new).decrypt(before, "aad")
    assert "k1" in str(err.value)


def test_settings_error_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from callstream.gateway import load

    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", "postgresql://x@127.0.0.1/db")
    monkeypatch.setenv("CALLSTREAM_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("CALLSTREAM_SECRET_KEY", "k1:" + _key(20))
    with pytest.raises(SystemExit) as exit_info:
        load()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CALLSTREAM_SECRET_KEY" in err
    assert "20 bytes" in err
