"""Secrets at rest: AES-GCM envelopes under a key ring read from ``CALLSTREAM_SECRET_KEY``.

The ring is one or more ``keyid:base64urlkey`` entries separated by commas. The first key encrypts;
every key decrypts, found by the key id written into each envelope, so a key can be rotated: put the
new key first, run ``callstream-gateway reencrypt``, then drop the old one.

Envelope: ``0x01 | len(key id) | key id | 12-byte nonce | ciphertext+tag``. The caller passes
associated data naming the row and column (``integration:<id>:credentials``), so a ciphertext
copied into another row or column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class KeyRingError(ValueError):
    """``CALLSTREAM_SECRET_KEY`` cannot be read; the message says why without showing the key."""


class DecryptionError(Exception):
    """An envelope was made under an unknown key, is damaged, or belongs to another row."""


def parse_key_ring(value: str) -> list[tuple[str, bytes]]:
    """``"k2:<b64url>,k1:<b64url>"`` → ``[("k2", key), ("k1", key)]`` (first one encrypts)."""
    entries: list[tuple[str, bytes]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise KeyRingError("each entry must be keyid:base64urlkey (key id of 1-32 letters, digits, _ or -)")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise KeyRingError(f"key {key_id!r} is not valid base64url") from None
        if len(key) != 32:
            raise KeyRingError(f"key {key_id!r} decodes to {len(key)} bytes; AES-256-GCM needs exactly 32")
        if any(existing == key_id for existing, _ in entries):
            raise KeyRingError(f"key id {key_id!r} appears twice")
        entries.append((key_id, key))
    if not entries:
        raise KeyRingError("no key given; expected keyid:base64urlkey[,keyid:base64urlkey...]")
    return entries


class Cipher:
    """Encrypts with the newest key and decrypts with any key of the ring."""

    def __init__(self, ring: list[tuple[str, bytes]]) -> None:
        if not ring:
            raise KeyRingError("the key ring is empty")
        self.current_key_id = ring[0][0]
        self._keys: Mapping[str, AESGCM] = {key_id: AESGCM(key) for key_id, key in ring}
        self._current = self._keys[self.current_key_id]

    @classmethod
    def from_setting(cls, value: str) -> Cipher:
        return cls(parse_key_ring(value))

    def encrypt(self, plaintext: bytes, associated_data: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        key_id = self.current_key_id.encode()
        sealed = self._current.encrypt(nonce, plaintext, associated_data.encode())
        return bytes([_VERSION, len(key_id)]) + key_id + nonce + sealed

    def decrypt(self, envelope: bytes, associated_data: str) -> bytes:
        key_id, nonce, sealed = self._split(envelope)
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionError(f"encrypted under key {key_id!r}, which CALLSTREAM_SECRET_KEY does not hold")
        try:
            return aead.decrypt(nonce, sealed, associated_data.encode())
        except InvalidTag:
            raise DecryptionError("the envelope does not authenticate (wrong key, damaged, or another row)") from None

    def key_id_of(self, envelope: bytes) -> str:
        return self._split(envelope)[0]

    @staticmethod
    def _split(envelope: bytes) -> tuple[str, bytes, bytes]:
        if len(envelope) < 2 or envelope[0] != _VERSION:
            raise DecryptionError("not an envelope of a known version")
        n = envelope[1]
        key_id = envelope[2 : 2 + n].decode("ascii", "replace")
        nonce = envelope[2 + n : 2 + n + _NONCE_BYTES]
        sealed = envelope[2 + n + _NONCE_BYTES :]
        if len(nonce) != _NONCE_BYTES or len(sealed) < 16:
            raise DecryptionError("the envelope is truncated")
        return key_id, nonce, sealed
