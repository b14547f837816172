"""Who may call the gateway's integration routes: the admin token (every workspace), or an API token
with the ``manage`` scope (its own workspaces only).

Tokens are the ``api_tokens`` rows the admin API issues, looked up by ``hash_api_token`` (the one
digest rule, shared with the linker). A workspace the caller does not cover is answered exactly like
one that does not exist (404), so a token learns nothing about other workspaces. The routes are an
operator's and a product's, not a hot path: each request looks its token up (a revoked token stops
at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection

from callstream.contracts import hash_api_token
from callstream.runtime import AdminToken, ApiError, bearer_token

READ = "read"
MANAGE = "manage"
SCOPES = (READ, MANAGE)


@dataclass(frozen=True, slots=True)
class Caller:
    """``workspaces is None``: the admin token. Otherwise a manage token and what it covers."""

    workspaces: frozenset[str] | None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.workspaces is None

    def covers(self, workspace_id: str) -> bool:
        return self.workspaces is None or workspace_id in self.workspaces

    def require(self, workspace_id: str, error: str, detail: str) -> None:
        """404 with the same ``error`` and ``detail`` a missing thing gets."""
        if not self.covers(workspace_id):
            raise ApiError(404, error, detail)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="callstream"'})


async def manage_caller(
    connection: ASGIConnection[Any, Any, Any, Any], admin: AdminToken, pool: asyncpg.Pool
) -> Caller:
    """The caller of a route open to the admin token and to manage tokens; 401 for anyone else
    (a read-only token included: it is known, but may not manage)."""
    token = bearer_token(connection.headers.get("authorization", ""))
    if token is None:
        raise _unauthorized("send Authorization: Bearer <admin token or a manage-scoped API token>")
    if admin.accepts(token):
        return Caller(None)
    row = await pool.fetchrow(
        "select id::text, workspace_ids, scopes from api_tokens where token_hash = $1 and revoked_at is null",
        hash_api_token(token),
    )
    if row is None:
        raise _unauthorized("unknown or revoked token")
    if MANAGE not in row["scopes"]:
        raise ApiError(403, "insufficient_scope", "this token may read, not manage (issue one with scopes manage)")
    return Caller(frozenset(row["workspace_ids"]), row["id"])
