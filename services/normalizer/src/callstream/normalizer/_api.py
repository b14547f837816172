"""The normalizer's admin API (``CALLSTREAM_NORMALIZER_ADMIN_TOKEN``; closed, 401, while unset):
workspace retention, which the normalizer's own job carries out (``_retention.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, get, put
from litestar.params import FromPath

from callstream.contracts import WorkspaceId
from callstream.runtime import AdminToken, ApiError

from ._retention import Retention, get_retention, set_retention

__all__ = ["admin_router"]

MAX_BODY_BYTES = 1024
MAX_RETENTION_DAYS = 36_500  # the migration's check


class RetentionRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Required, so that a typo in the field name is a 400 rather than "keep for ever".
    message_retention_days: Annotated[int, msgspec.Meta(ge=1, le=MAX_RETENTION_DAYS)] | None


class RetentionView(msgspec.Struct):
    workspace_id: str
    message_retention_days: int | None
    updated_at: datetime | None


_REQUEST = msgspec.json.Decoder(RetentionRequest)
_WORKSPACE = msgspec.json.Decoder(WorkspaceId)


def _workspace(value: str) -> str:
    try:
        return _WORKSPACE.decode(msgspec.json.encode(value))
    except msgspec.ValidationError:
        raise ApiError(400, "bad_workspace_id", "a workspace id is 1-64 letters, digits, '_' or '-'") from None


def _view(retention: Retention) -> RetentionView:
    return RetentionView(retention.workspace_id, retention.message_retention_days, retention.updated_at)


def admin_router(pool_of: Callable[[], asyncpg.Pool], admin: AdminToken) -> Router:
    @get("/workspaces/{workspace_id:str}/retention")
    async def read_retention(workspace_id: FromPath[str]) -> RetentionView:
        return _view(await get_retention(pool_of(), _workspace(workspace_id)))

    @put("/workspaces/{workspace_id:str}/retention")
    async def write_retention(workspace_id: FromPath[str], request: Request[Any, Any, Any]) -> RetentionView:
        """``{"message_retention_days": N}`` (1-36500) or ``null`` (keep for ever). Messages older
        than that become tombstones on the retention job's next run."""
        workspace = _workspace(workspace_id)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY_BYTES} bytes")
        try:
            wanted = _REQUEST.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return _view(await set_retention(pool_of(), workspace, wanted.message_retention_days))

    return Router(path="/v1", guards=[admin], route_handlers=[read_retention, write_retention])
