"""``callstream-gateway reencrypt``: rewrite every secret envelope under the newest key.

Rotation: put the new key first in ``CALLSTREAM_SECRET_KEY`` (keep the old one after it), roll the
gateways, run this command, then remove the old key. Each row is rewritten in its own transaction
under ``FOR UPDATE`` so that a concurrent OAuth refresh is never overwritten with older tokens.
"""

from __future__ import annotations

import argparse

import asyncpg

from callstream.runtime import get_logger

from ._credentials import credentials_aad, webhook_secret_aad
from ._crypto import Cipher
from ._settings import Settings

log = get_logger(__name__)

_COLUMNS = {"credentials": credentials_aad, "webhook_secret": webhook_secret_aad}


async def reencrypt_all(conn: asyncpg.Connection, cipher: Cipher) -> int:
    """Returns how many envelopes were rewritten; envelopes already under the newest key are kept."""
    rewritten = 0
    ids = [r["id"] for r in await conn.fetch("select id from integrations order by id")]
    for integration_id in ids:
        async with conn.transaction():
            row = await conn.fetchrow(
                "select id::text, credentials, webhook_secret from integrations where id = $1 for update",
                integration_id,
            )
            if row is None:
                continue
            for column, aad in _COLUMNS.items():
                envelope = row[column]
                if envelope is None or cipher.key_id_of(envelope) == cipher.current_key_id:
                    continue
                plaintext = cipher.decrypt(envelope, aad(row["id"]))
                await conn.execute(
                    f"update integrations set {column} = $2 where id = $1",
                    integration_id,
                    cipher.encrypt(plaintext, aad(row["id"])),
                )
                rewritten += 1
    return rewritten


async def run(settings: Settings, _args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        count = await reencrypt_all(conn, settings.cipher())
    finally:
        await conn.close()
    print(f"callstream-gateway: {count} secrets re-encrypted under key {settings.cipher().current_key_id}")
    return 0
