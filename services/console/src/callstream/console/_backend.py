"""The four services' HTTP APIs as the console uses them: one ``httpx.AsyncClient`` per service,
each with that service's admin token (from the console's own settings; never sent to a browser).

Every call answers the service's JSON or raises :class:`BackendError`, which a page shows as what
happened and what to do; a service that cannot be reached is ``status 0``."""

from __future__ import annotations

import asyncio
import copy
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from ._settings import Settings

__all__ = ["SERVICE_NAMES", "Backend", "BackendError", "Readiness"]

SERVICE_NAMES = ("gateway", "scheduler", "normalizer", "linker")
READY_TIMEOUT_SECONDS = 3.0
# Integrations per batch health request (the scheduler takes up to 500): 100 ids are ~5 KB of query,
# under the 8 KB request line common proxies allow (nginx answers 414 past it).
HEALTH_BATCH = 100
# Progress streams wait long between events (a run paced by its provider): no read timeout.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)
_DLQ_METRIC = re.compile(r"^callstream_dlq_messages\{[^}]*\}\s+([0-9.eE+]+)\s*$", re.MULTILINE)


class BackendError(Exception):
    """A service answered an error (``status``, its ``error`` code and ``detail``), or could not be
    reached (``status`` 0)."""

    def __init__(self, service: str, status: int, code: str, detail: str) -> None:
        super().__init__(f"{service}: {status} {code}: {detail}")
        self.service = service
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def unreachable(self) -> bool:
        return self.status == 0


@dataclass(frozen=True, slots=True)
class Readiness:
    service: str
    ready: bool
    checks: dict[str, str]  # name -> "ok" or the failing check's words (its admin sees them)
    error: str | None = None  # the service could not be asked


def _headers(token: SecretStr | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def _next_cursor(response: httpx.Response) -> str | None:
    """The cursor of a keyset page's next (its RFC 8288 ``Link: rel="next"``); None on the last page."""
    following = response.links.get("next", {}).get("url")
    return httpx.URL(following).params.get("cursor") if following else None


def _error_of(service: str, response: httpx.Response) -> BackendError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        detail = body.get("detail")
        return BackendError(service, response.status_code, str(body["error"]), str(detail) if detail else "")
    return BackendError(service, response.status_code, f"http_{response.status_code}", response.text[:200])


class Backend:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        timeout = httpx.Timeout(settings.backend_timeout_seconds)
        urls = {
            "gateway": (settings.gateway_url, settings.gateway_token),
            "scheduler": (settings.scheduler_url, settings.scheduler_token),
            "normalizer": (settings.normalizer_url, settings.normalizer_token),
            "linker": (settings.linker_url, settings.linker_token),
        }
        self.clients = {
            name: httpx.AsyncClient(
                base_url=url.rstrip("/"), headers=_headers(token), timeout=timeout, transport=transport
            )
            for name, (url, token) in urls.items()
        }

        self.token: str | None = None  # a workspace's manage token: every call made with it

    def scoped(self, token: str) -> Backend:
        """The same clients, calling with a workspace's ``manage`` token instead of the admin tokens:
        each service then answers for that token's workspaces only (the normalizer's admin API
        takes no such token: its calls fail as ``operator_only`` without being made)."""
        view = copy.copy(self)
        view.token = token
        return view

    @property
    def operator(self) -> bool:
        return self.token is None

    def _auth(self, service: str) -> dict[str, str]:
        if self.token is None:
            return {}
        if service == "normalizer":
            raise BackendError(
                service, 403, "operator_only", "the normalizer's admin API takes the operator's token only"
            )
        return {"Authorization": f"Bearer {self.token}"}

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients.values()))

    async def _call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **self._auth(service)}
        try:
            return await self.clients[service].request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(service, 0, "unreachable", f"{type(exc).__name__}: {exc}"[:200]) from None

    async def _answer(
        self, service: str, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        response = await self._call(service, method, path, **kwargs)
        if response.status_code not in ok:
            if response.status_code == 401 and self.token is not None:
                raise BackendError(service, 401, "token_refused", "the sign-in token was refused (revoked?)")
            raise _error_of(service, response)
        return response

    async def _json(self, service: str, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = await self._answer(service, method, path, ok, **kwargs)
        return response.json() if response.content else None

    # ---- gateway ------------------------------------------------------------------------------
    async def integrations(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        params = {"workspace_id": workspace_id} if workspace_id else None
        return list(await self._json("gateway", "GET", "/v1/integrations", params=params))

    async def integrations_page(
        self, limit: int, cursor: str | None = None, **filters: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the gateway's list, newest first (filters: ``workspace_id``, ``provider``, the
        gateway's ``status``), and the cursor of the next (its ``Link: rel="next"``), None on the last."""
        params = {"limit": limit, "cursor": cursor, **filters}
        response = await self._answer(
            "gateway", "GET", "/v1/integrations", params={k: val for k, val in params.items() if val}
        )
        return list(response.json()), _next_cursor(response)

    async def integration(self, integration_id: str) -> dict[str, Any]:
        return dict(await self._json("gateway", "GET", f"/v1/integrations/{integration_id}"))

    async def create_integration(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._json("gateway", "POST", "/v1/integrations", ok=(201,), json=body))

    async def disable_integration(self, integration_id: str) -> dict[str, Any]:
        return dict(await self._json("gateway", "DELETE", f"/v1/integrations/{integration_id}"))

    async def erase_integration(self, integration_id: str) -> dict[str, Any]:
        return dict(
            await self._json(
                "gateway", "DELETE", f"/v1/integrations/{integration_id}", ok=(202,), params={"erase": "true"}
            )
        )

    async def erasure(self, erasure_id: str) -> dict[str, Any]:
        return dict(await self._json("gateway", "GET", f"/v1/erasures/{erasure_id}"))

    async def connect_session(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._json("gateway", "POST", "/v1/connect-sessions", ok=(201,), json=body))

    # ---- scheduler ----------------------------------------------------------------------------
    async def sync_states(self, workspace_id: str) -> list[dict[str, Any]]:
        return list(await self._json("scheduler", "GET", "/v1/sync-state", params={"workspace_id": workspace_id}))

    async def sync_states_of(self, integration_ids: list[str], workspace_id: str | None = None) -> list[dict[str, Any]]:
        """The sync states of these integrations (a list's page; at most 500). The operator names no
        workspace; a manage token must name one of its own, and gets only that workspace's."""
        params: list[tuple[str, str]] = [("integration_id", i) for i in integration_ids]
        if workspace_id:
            params.append(("workspace_id", workspace_id))
        return list(await self._json("scheduler", "GET", "/v1/sync-state", params=params))

    async def sync_states_page(
        self, limit: int, cursor: str | None = None, **filters: str | list[str] | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of sync states, newest integration first (filters: ``status`` as the states word
        it, ``integration_status``, ``provider``, ``workspace_id``; a list is any of its values),
        and the cursor of the next (its ``Link: rel="next"``), None on the last."""
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if cursor:
            params.append(("cursor", cursor))
        for name, wanted in filters.items():
            for value in [wanted] if isinstance(wanted, str) else wanted or []:
                if value:
                    params.append((name, value))
        response = await self._answer("scheduler", "GET", "/v1/sync-state", params=params)
        return list(response.json()), _next_cursor(response)

    async def sync_summary(self, attention_limit: int) -> dict[str, Any]:
        """Every integration counted by provider, gateway status and sync status, and the state and
        health of those that may need a person (the operator's alone)."""
        params = {"attention_limit": attention_limit}
        return dict(await self._json("scheduler", "GET", "/v1/sync-summary", params=params))

    async def healths(self, integration_ids: list[str]) -> list[dict[str, Any]]:
        """Many integrations' health, a request per HEALTH_BATCH (the operator's alone; an unknown
        or erased integration is left out)."""
        batches = [integration_ids[k : k + HEALTH_BATCH] for k in range(0, len(integration_ids), HEALTH_BATCH)]
        pages = await asyncio.gather(
            *(
                self._json("scheduler", "GET", "/v1/health", params=[("integration_id", i) for i in batch])
                for batch in batches
            )
        )
        return [item for page in pages for item in page["items"]]

    async def sync_state(self, integration_id: str) -> dict[str, Any] | None:
        try:
            return dict(await self._json("scheduler", "GET", f"/v1/integrations/{integration_id}/sync-state"))
        except BackendError as exc:
            if exc.status == 404:  # not seen by the due loop yet
                return None
            raise

    async def health(self, integration_id: str) -> dict[str, Any]:
        return dict(await self._json("scheduler", "GET", f"/v1/integrations/{integration_id}/health"))

    async def runs(self, integration_id: str, limit: int = 20) -> list[dict[str, Any]]:
        page = await self._json("scheduler", "GET", f"/v1/integrations/{integration_id}/syncs", params={"limit": limit})
        return list(page["items"])

    async def start_sync(self, integration_id: str, body: dict[str, Any]) -> str:
        answer = await self._json("scheduler", "POST", f"/v1/integrations/{integration_id}/syncs", ok=(202,), json=body)
        return str(answer["run_id"])

    async def cancel(self, integration_id: str, run_id: str) -> dict[str, Any]:
        return dict(await self._json("scheduler", "POST", f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel"))

    async def events(self, integration_id: str, run_id: str, last_event_id: str | None) -> httpx.Response:
        """The scheduler's progress stream of a run, opened: the caller reads ``aiter_bytes`` and
        closes it (``aclose``) when done."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        headers.update(self._auth("scheduler"))
        client = self.clients["scheduler"]
        request = client.build_request(
            "GET", f"/v1/integrations/{integration_id}/syncs/{run_id}/events", headers=headers, timeout=STREAM_TIMEOUT
        )
        try:
            return await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise BackendError("scheduler", 0, "unreachable", f"{type(exc).__name__}: {exc}"[:200]) from None

    # ---- normalizer ---------------------------------------------------------------------------
    async def dlq_depth(self) -> int | None:
        """Dead letters the normalizer's backlog gauge last counted (its ``/metrics``); None when
        it cannot be read (or the sign-in is a workspace's, which may not read it)."""
        if self.token is not None:
            return None
        try:
            response = await self._call("normalizer", "GET", "/metrics")
        except BackendError:
            return None
        if response.status_code != 200:
            return None
        return int(sum(float(v) for v in _DLQ_METRIC.findall(response.text)))

    async def dead_letters(self) -> tuple[list[dict[str, Any]], int]:
        """The newest dead letters (with their payload's start) and how many there are now (the
        metrics' gauge lags behind by up to its interval)."""
        answer = await self._json("normalizer", "GET", "/v1/dlq", params={"include": "payload"})
        items = list(answer["items"])
        return items, int(answer.get("total", len(items)))

    async def redrive(self, seq: int) -> None:
        await self._json("normalizer", "POST", f"/v1/dlq/{seq}/redrive", ok=(200, 202, 204))

    async def redrive_all(self, up_to: int | None) -> dict[str, Any]:
        """One batch of the normalizer's "redrive all" (``redriven``, ``failed``, ``remaining``),
        never past ``up_to``, the newest dead letter the operator saw."""
        params = {"up_to": up_to} if up_to is not None else None
        return dict(await self._json("normalizer", "POST", "/v1/dlq/redrive", params=params))

    # ---- linker -------------------------------------------------------------------------------
    async def messages(self, **params: Any) -> dict[str, Any]:
        """A page of messages, newest first; without ``workspace_id`` of every workspace the sign-in
        may read (the linker scopes it)."""
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return dict(await self._json("linker", "GET", "/v1/messages", params=query))

    async def message(self, message_id: str) -> dict[str, Any]:
        return dict(await self._json("linker", "GET", f"/v1/messages/{message_id}"))

    # ---- every service ------------------------------------------------------------------------
    async def readiness(self, service: str) -> Readiness:
        try:
            response = await self.clients[service].get("/health/ready", timeout=READY_TIMEOUT_SECONDS)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return Readiness(service, False, {}, f"not answering ({type(exc).__name__})")
        checks = {str(k): str(v) for k, v in dict(body.get("checks", {})).items()}
        return Readiness(service, response.status_code == 200, checks)

    async def readiness_all(self) -> list[Readiness]:
        return list(await asyncio.gather(*(self.readiness(s) for s in SERVICE_NAMES)))
