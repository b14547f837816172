"""Workspace API tokens with the ``manage`` scope: the one rule every service's management routes use.

The gateway issues the tokens (its ``api_tokens`` table: ``workspace_ids``, ``scopes`` of ``read``
and ``manage``, ``revoked_at``), keeping only ``callstream.contracts.hash_api_token`` of each. A
route open to managers takes the service's admin token (every workspace) or a manage token, and a
manage token reaches only its own workspaces: anything of another workspace is answered exactly as
if it did not exist (404). Management routes are not a hot path: each request looks its token up,
so a revoked token stops at once. (The linker's reads keep their own cached check: every token
reads, whatever its scopes.)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from callstream.contracts import hash_api_token

from ._admin import AdminToken, bearer_token
from ._http import ApiError

READ_SCOPE = "read"
MANAGE_SCOPE = "manage"


@dataclass(frozen=True, slots=True)
class ManageAccess:
    """Who manages: ``workspaces is None`` is the admin token; otherwise a manage token (``token_id``)
    and the workspaces it covers."""

    workspaces: frozenset[str] | None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.workspaces is None

    def covers(self, workspace_id: str) -> bool:
        return self.workspaces is None or workspace_id in self.workspaces


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="callstream"'})


def _read_only() -> ApiError:
    return ApiError(403, "insufficient_scope", "this token may read, not manage (issue one with scopes manage)")


async def manage_access(
    connection: ASGIConnection[Any, Any, Any, Any], admin: AdminToken, pool: asyncpg.Pool
) -> ManageAccess:
    """The admin token, or a manage token; 401 for no or an unknown token, 403 for a read token."""
    token = bearer_token(connection.headers.get("authorization", ""))
    if token is None:
        raise _unauthorized("send Authorization: Bearer <admin token or a manage-scoped API token>")
    if admin.accepts(token):
        return ManageAccess(None)
    row = await pool.fetchrow(
        "select id::text, workspace_ids, scopes from api_tokens where token_hash = $1 and revoked_at is null",
        hash_api_token(token),
    )
    if row is None:
        raise _unauthorized("unknown or revoked token")
    if MANAGE_SCOPE not in row["scopes"]:
        raise _read_only()
    return ManageAccess(frozenset(row["workspace_ids"]), row["id"])


def still_manages_sql(token_id: str, workspace_id: str) -> str:
    """A SQL condition, true while the API token whose id is ``token_id`` (a column or parameter)
    is not revoked, has the manage scope and covers ``workspace_id``: :func:`manage_access`'s rule,
    for work a token started and a later request completes (a connect session's callback)."""
    return (
        f"exists (select from api_tokens t where t.id = {token_id} and t.revoked_at is null"
        f" and '{MANAGE_SCOPE}' = any (t.scopes) and {workspace_id} = any (t.workspace_ids))"
    )


WorkspaceOf = Callable[[asyncpg.Pool, uuid.UUID], Awaitable[str | None]]


class ManageGuard:
    """Litestar guard of a router whose routes name an integration (path ``integration_id``) or a
    workspace (query ``workspace_id``): the admin token passes; a manage token passes for its own
    workspaces, and an integration of another workspace (or none) is ``not_found()``, another
    workspace ``404 workspace_not_found``. A route naming neither, or whose handler takes no
    ``workspace_id`` (a query naming one would not scope what it serves), stays the admin token's.
    No token, or one the service does not know, is answered as the admin guard answers it."""

    __slots__ = ("_admin", "_not_found", "_pool", "_workspace_of")

    def __init__(
        self,
        admin: AdminToken,
        pool: Callable[[], asyncpg.Pool],
        workspace_of: WorkspaceOf,
        not_found: Callable[[], ApiError],
    ) -> None:
        self._admin = admin
        self._pool = pool
        self._workspace_of = workspace_of
        self._not_found = not_found

    @property
    def admin(self) -> AdminToken:
        return self._admin

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        authorization = connection.headers.get("authorization", "")
        if self._admin.accepts_header(authorization) or bearer_token(authorization) is None:
            self._admin(connection, handler)  # passes, or says what the admin guard says
            return
        try:
            access = await manage_access(connection, self._admin, self._pool())
        except ApiError as exc:
            if exc.status_code == 401:
                self._admin(connection, handler)  # an unknown token: the admin guard's answer
            raise
        integration_id = connection.path_params.get("integration_id")
        if integration_id is not None:
            key = integration_id if isinstance(integration_id, uuid.UUID) else _uuid(str(integration_id))
            workspace_id = None if key is None else await self._workspace_of(self._pool(), key)
            if workspace_id is None or not access.covers(workspace_id):
                raise self._not_found()
            return
        named = connection.query_params.getall("workspace_id", [])
        if len(named) > 1:
            # The route reads one of them, and which one is the framework's choice: the one this
            # guard checked might not be the one served.
            raise ApiError(400, "bad_workspace_id", "name one workspace_id")
        workspace_id = named[0] if named else None
        # Only a route that reads ``workspace_id`` is scoped by it: on any other (a batch of
        # integration ids, everything), the workspace named is not the one served.
        if workspace_id is not None and "workspace_id" in handler.parsed_fn_signature.parameters:
            if not access.covers(workspace_id):
                raise ApiError(404, "workspace_not_found", "no such workspace")
            return
        raise ApiError(403, "admin_only", "only the admin token may do this")


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
