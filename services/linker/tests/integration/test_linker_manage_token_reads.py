"""A workspace's manage token (#18) also reads: the linker checks that a token exists, is not revoked
and covers the workspace, whatever its scopes (a read token, the default, as before)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import hash_api_token

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)


async def test_read_and_manage_tokens_read_their_workspaces(linker: Client, seed: Seed) -> None:
    message_id = await seed.message("acme", "fathom", "m-1", {})
    reader = await seed.token("acme")
    manager = "cst_manage_" + uuid.uuid4().hex
    await seed.conn.execute(
        "insert into api_tokens (id, name, token_hash, workspace_ids, scopes) values ($1, 'm', $2, '{acme}', $3)",
        uuid.uuid4(),
        hash_api_token(manager),
        ["read", "manage"],
    )
    for token in (reader, manager):
        response = await linker.get(f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
    other = await seed.message("globex", "fathom", "m-2", {})
    response = await linker.get(f"/v1/messages/{other}", headers={"Authorization": f"Bearer {manager}"})
    assert response.status_code == 404
