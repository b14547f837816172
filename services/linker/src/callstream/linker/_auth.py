"""Bearer tokens to the workspaces they may read.

Tokens are the gateway's (``api_tokens``, stored as ``hash_api_token``), plus the linker's admin
token (``CALLSTREAM_LINKER_ADMIN_TOKEN``, checked by runtime's ``AdminToken``), which reads every
workspace. A workspace a token does not cover is answered exactly like one that
does not exist (404), so a token learns nothing about other workspaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection

from callstream.contracts import hash_api_token
from callstream.runtime import AdminToken, ApiError, ClientRateLimit

_BEARER = "bearer "
_MAX_CACHED_TOKENS = 10_000
# Unknown tokens are remembered apart, in a bounded map of their own: a flood of made-up tokens
# evicts only other made-up tokens, never a known one (10,000 of them once emptied the known cache,
# and every legitimate request lost the fast path).
_MAX_UNKNOWN_TOKENS = 10_000
_MAX_KEPT_HEADER = 128  # "Bearer " and a token: the gateway's are 47 characters


@dataclass(frozen=True, slots=True)
class Access:
    """The workspaces one caller may read; ``None`` means every workspace (the admin token)."""

    workspaces: frozenset[str] | None

    @property
    def is_admin(self) -> bool:
        return self.workspaces is None

    def covers(self, workspace_id: str) -> bool:
        return self.workspaces is None or workspace_id in self.workspaces

    def require(self, workspace_id: str, what: str) -> None:
        """404 "no such <what>" (what the caller looked for, so nothing tells a foreign workspace
        from one that does not exist)."""
        if not self.covers(workspace_id):
            raise not_found(what)

    def workspace_filter(self) -> list[str] | None:
        """For SQL: ``null`` (no filter) or the list a row's workspace must be in."""
        return None if self.workspaces is None else sorted(self.workspaces)


_ADMIN = Access(workspaces=None)
_NOT_CACHED = object()


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


_GONE = {
    "provider_deleted": "the call was deleted at the provider",
    "erased": "the message was erased on request",
    "retention": "the message outlived its workspace's retention",
}


def gone(reason: str) -> ApiError:
    """410 for a tombstone: the message existed and is gone for good; ``error`` is ``gone_<reason>``
    (``gone_provider_deleted``, ``gone_erased``, ``gone_retention``), ``detail`` says it in words."""
    return ApiError(410, f"gone_{reason}", _GONE.get(reason, "the message was deleted"))


def _bearer_token(authorization: str) -> str | None:
    token = authorization[len(_BEARER) :].strip()
    return token if authorization[: len(_BEARER)].lower() == _BEARER and token else None


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="callstream"'})


class Authenticator:
    """Looks tokens up by hash, reusing an answer for ``ttl_seconds`` (a revoked token stops
    working within that time) so a hot path does not pay a query per request."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        admin: AdminToken,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        unknown_tokens: ClientRateLimit | None = None,
    ) -> None:
        self._pool = pool
        self._admin = admin
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[Access, float]] = {}  # known tokens, oldest first
        self._unknown: dict[str, float] = {}  # unknown tokens' hashes -> until when, oldest first
        self._by_header: dict[str, tuple[Access, float]] = {}
        # Each client's look-ups of tokens not known yet: a query each, so limited per client (429).
        self._limit = unknown_tokens
        # One query per token at a time: when an entry expires under load, every request in
        # flight waits for the same look-up instead of each sending its own.
        self._pending: dict[str, asyncio.Future[Access | None]] = {}

    async def __call__(self, request: ASGIConnection[Any, Any, Any, Any]) -> Access:
        token = _bearer_token(request.headers.get("authorization", ""))
        if token is None:
            raise _unauthorized("send Authorization: Bearer <token>")
        if self._is_admin(token):
            return _ADMIN
        token_hash = hash_api_token(token)
        client = None
        # Charged: a look-up this request would start. Not a token known before whose answer just
        # expired, nor one a look-up is already under way for (when a known token's entry expires
        # under load, every request in flight joins one query: charging each was a 429 for a
        # legitimate client, bench/linker).
        if (
            self._limit is not None
            and token_hash not in self._pending
            and token_hash not in self._cache
            and self._cached(token_hash, self._clock()) is _NOT_CACHED
        ):
            client = request.client.host if request.client else ""
            wait = self._limit.take(client)
            if wait is not None:
                raise ApiError(
                    429,
                    "too_many_requests",
                    "too many unknown tokens from this client; retry later",
                    headers={"Retry-After": str(wait)},
                )
        access = await self._lookup(token_hash)
        if access is None:
            raise _unauthorized("unknown or revoked token")
        if client is not None and self._limit is not None:
            self._limit.give_back(client)  # a known token costs its client nothing
        return access

    def _cached(self, token_hash: str, now: float) -> Access | object | None:
        """The remembered answer (``None``: known to be unknown), or ``_NOT_CACHED``."""
        hit = self._cache.get(token_hash)
        if hit is not None and now < hit[1]:
            return hit[0]
        until = self._unknown.get(token_hash)
        if until is not None and now < until:
            return None
        return _NOT_CACHED

    def known(self, authorization: str) -> Access | None:
        """The access of an ``Authorization`` value answerable without a query (the admin token,
        or a token looked up within the TTL); ``None`` for anything else, including a token known
        to be unknown: the full path answers those.

        A gateway token's answer is kept by the header value as well (parsing and hashing the
        token was a fifth of a cached link's answer, ``bench/linker``): only for headers of a
        token's length, so padded spellings cannot fill memory, only until the looked-up answer
        expires, and forgotten whenever that is, so a revoked token stops working exactly as soon
        as before. The admin token is not kept: it is always compared as a digest, in constant time."""
        hit = self._by_header.get(authorization)
        if hit is not None and self._clock() < hit[1]:
            return hit[0]
        token = _bearer_token(authorization)
        if token is None:
            return None
        if self._is_admin(token):
            return _ADMIN
        hit = self._cache.get(hash_api_token(token))
        if hit is None or self._clock() >= hit[1]:
            return None
        if len(authorization) <= _MAX_KEPT_HEADER:
            if len(self._by_header) >= _MAX_CACHED_TOKENS:
                self._by_header.clear()
            self._by_header[authorization] = hit
        return hit[0]

    def _is_admin(self, token: str) -> bool:
        return self._admin.accepts(token)  # fixed-length digests: the token's length does not leak

    async def _lookup(self, token_hash: str) -> Access | None:
        now = self._clock()
        cached = self._cached(token_hash, now)
        if cached is not _NOT_CACHED:
            return cached  # type: ignore[return-value]  # an Access or None
        pending = self._pending.get(token_hash)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                # The request that was looking it up went away: look it up here instead.
        future: asyncio.Future[Access | None] = asyncio.get_running_loop().create_future()
        self._pending[token_hash] = future
        try:
            row = await self._pool().fetchrow(
                "select workspace_ids from api_tokens where token_hash = $1 and revoked_at is null", token_hash
            )
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a failure nobody waited for is not reported as lost
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._pending[token_hash]
        access = None if row is None else Access(workspaces=frozenset(row["workspace_ids"]))
        future.set_result(access)
        if self._ttl > 0:
            self._remember(token_hash, access, now + self._ttl)
        return access

    def _remember(self, token_hash: str, access: Access | None, until: float) -> None:
        """Keep an answer until ``until``; each map drops its oldest entry when full (and the
        answers kept by header with a known one: nothing outlives the answer it was kept from)."""
        if access is None:
            self._cache.pop(token_hash, None)  # revoked: no longer a token known before
            self._unknown.pop(token_hash, None)
            if len(self._unknown) >= _MAX_UNKNOWN_TOKENS:
                del self._unknown[next(iter(self._unknown))]
            self._unknown[token_hash] = until
            return
        self._unknown.pop(token_hash, None)
        self._cache.pop(token_hash, None)
        if len(self._cache) >= _MAX_CACHED_TOKENS:
            del self._cache[next(iter(self._cache))]
            self._by_header.clear()  # rare (10,000 known tokens): the dropped one's header goes too
        self._cache[token_hash] = (access, until)
