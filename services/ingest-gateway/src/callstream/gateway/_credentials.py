"""What an integration's encrypted columns hold, and how they are sealed to their row."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import msgspec

from ._crypto import Cipher


class Credentials(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The plaintext of ``integrations.credentials`` (JSON, then AES-GCM)."""

    api_key: str | None = None  # Fathom API key
    access_key: str | None = None  # Gong Basic
    access_key_secret: str | None = None
    access_token: str | None = None  # OAuth
    refresh_token: str | None = None
    expires_at: datetime | None = None


_encode = msgspec.json.Encoder().encode
_decode_credentials = msgspec.json.Decoder(Credentials).decode


def credentials_aad(integration_id: str) -> str:
    return f"integration:{integration_id}:credentials"


def webhook_secret_aad(integration_id: str) -> str:
    return f"integration:{integration_id}:webhook_secret"


def seal_credentials(cipher: Cipher, integration_id: str, credentials: Credentials) -> bytes:
    return cipher.encrypt(_encode(credentials), credentials_aad(integration_id))


def open_credentials(cipher: Cipher, integration_id: str, envelope: bytes | None) -> Credentials:
    if envelope is None:
        return Credentials()
    return _decode_credentials(cipher.decrypt(envelope, credentials_aad(integration_id)))


def seal_webhook_secret(cipher: Cipher, integration_id: str, secret: str) -> bytes:
    return cipher.encrypt(secret.encode(), webhook_secret_aad(integration_id))


def open_webhook_secret(cipher: Cipher, integration_id: str, envelope: bytes) -> str:
    return cipher.decrypt(envelope, webhook_secret_aad(integration_id)).decode()


class BadWebhookSecret(ValueError):
    pass


def webhook_key(secret: str) -> bytes:
    """Standard Webhooks: the HMAC key is the base64 after ``whsec_`` (fathom.md §4.3)."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadWebhookSecret("the webhook secret is not whsec_<base64>") from None
    if len(key) < 16:
        raise BadWebhookSecret("the webhook secret is shorter than 16 bytes")
    return key
