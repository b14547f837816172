"""Who may call the gateway's integration routes: the admin token (every workspace), or an API token
with the ``manage`` scope (its own workspaces only). The rule is runtime's (``manage_access``), the
one the scheduler's routes use too; a workspace the caller does not cover is answered exactly like
one that does not exist (404)."""

from __future__ import annotations

from callstream.runtime import MANAGE_SCOPE as MANAGE
from callstream.runtime import READ_SCOPE as READ
from callstream.runtime import ManageAccess as Caller
from callstream.runtime import manage_access as manage_caller

__all__ = ["MANAGE", "READ", "Caller", "manage_caller"]
