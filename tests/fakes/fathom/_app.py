"""The fake Fathom External API (``/external/v1``): meetings, recordings, webhooks, OAuth.

Shapes follow shared/providers/fathom.md: cursor paging of 10 newest first with a page-number
cursor (so pages shift when meetings arrive mid-crawl, as the real one can), ``X-Api-Key`` or
Bearer auth, 60 requests and 30 heavy requests per window per account with ``RateLimit-*``
headers and ``429`` + ``Retry-After``, and transcript/summary refused to OAuth apps on ``/meetings``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post

from .._controls import FixedWindow, Served, decode_cursor, encode_cursor
from ._data import CONTENT_FLAGS, LIST_FLAGS, build_meeting
from ._state import FathomState, OAuthGrant

API = "/external/v1"
HEAVY_FLAGS = ("include_transcript", "include_summary")
BOOL_FLAGS = tuple(LIST_FLAGS)
WEBHOOK_KEYS = {"destination_url", "triggered_for", *CONTENT_FLAGS}
TRIGGERS = {"my_recordings", "shared_external_recordings", "my_shared_with_team_recordings", "shared_team_recordings"}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject(400, {"error": f"{name} must be an ISO 8601 date-time"}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _flag(request: Request[Any, Any, Any], name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise _Reject(400, {"error": f"{name} must be true or false"})


class _Reject(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.response = _json(status, body, headers)


@dataclass
class _Limits:
    requests: FixedWindow
    heavy: FixedWindow


@dataclass
class FathomApp:
    state: FathomState
    _limits: dict[str, _Limits] = field(default_factory=dict)

    # --- the gate every API request passes: faults, auth, limits ---------------------------------

    def _account(self, request: Request[Any, Any, Any]) -> tuple[str, OAuthGrant | None]:
        key = request.headers.get("x-api-key")
        if key is not None:
            account = self.state.config.api_keys.get(key)
            if account is None:
                raise _Reject(401, {"error": "invalid API key"})
            return account, None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            grant = self.state.access_tokens.get(auth[7:].strip())
            if grant is None or grant.expires_at <= time.monotonic():
                raise _Reject(401, {"error": "invalid or expired access token"})
            return grant.account, grant
        raise _Reject(401, {"error": "missing X-Api-Key or Bearer token"})

    def _windows(self, account: str) -> _Limits:
        if account not in self._limits:
            cfg = self.state.config
            self._limits[account] = _Limits(
                FixedWindow(cfg.requests_per_window, cfg.window_seconds),
                FixedWindow(cfg.heavy_per_window, cfg.window_seconds),
            )
        return self._limits[account]

    async def _gate(self, request: Request[Any, Any, Any], *, heavy: bool) -> tuple[str, OAuthGrant | None, Limits]:
        faults = self.state.faults
        status = faults.take_failure()
        if status is not None:
            raise _Reject(status, {"error": "upstream unavailable (injected)"})
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        account, grant = self._account(request)
        limits = self._windows(account)
        if faults.limits_enabled:
            for window in (limits.heavy,) if heavy else ():
                if window.remaining() == 0:
                    raise self._too_many(window)
            if limits.requests.remaining() == 0:
                raise self._too_many(limits.requests)
            limits.requests.take()
            if heavy:
                limits.heavy.take()
        return account, grant, limits

    @staticmethod
    def _too_many(window: FixedWindow) -> _Reject:
        reset = math.ceil(window.reset_in())
        return _Reject(
            429,
            {"error": "rate limit exceeded"},
            {
                "Retry-After": str(max(reset, 1)),
                "RateLimit-Limit": str(window.limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset),
            },
        )

    def _finish(
        self,
        request: Request[Any, Any, Any],
        response: Response[bytes],
        account: str | None,
        heavy: bool,
        limits: Limits | None,
        arrived: float,
    ) -> Response[bytes]:
        if limits is not None and self.state.faults.limits_enabled:
            window = limits.requests
            response.headers.setdefault("RateLimit-Limit", str(window.limit))
            response.headers.setdefault("RateLimit-Remaining", str(window.remaining()))
            response.headers.setdefault("RateLimit-Reset", str(math.ceil(window.reset_in())))
        self.state.log.add(
            Served(arrived, request.method, request.url.path, response.status_code or 200, account, heavy)
        )
        return response

    async def _serve(self, request: Request[Any, Any, Any], heavy: bool, handler: Any) -> Response[bytes]:
        account: str | None = None
        limits: Limits | None = None
        arrived = time.monotonic()
        try:
            account, grant, limits = await self._gate(request, heavy=heavy)
            response = handler(account, grant)
        except _Reject as reject:
            response = reject.response
        return self._finish(request, response, account, heavy, limits, arrived)

    # --- meetings and recordings -------------------------------------------------------------------

    def _list_meetings(self, request: Request[Any, Any, Any], grant: OAuthGrant | None) -> Response[bytes]:
        q = request.query_params
        flags = {f for f in BOOL_FLAGS if _flag(request, f)}
        if grant is not None and flags & set(HEAVY_FLAGS):
            raise _Reject(
                400,
                {
                    "error": "include_transcript and include_summary are unavailable for OAuth "
                    "connected apps; use /recordings instead"
                },
            )
        after = _parse_time(q.get("created_after"), "created_after")
        before = _parse_time(q.get("created_before"), "created_before")
        page = 1
        if (cursor := q.get("cursor")) and (failed := self.state.faults.take_cursor_failure()) is not None:
            raise _Reject(failed, {"error": "upstream unavailable (injected)"})
        if cursor:
            decoded = decode_cursor(cursor)
            if decoded is None or not isinstance(decoded.get("page_num"), int) or decoded["page_num"] < 1:
                raise _Reject(400, {"error": "invalid cursor"})
            page = decoded["page_num"]
        index = self.state.index
        positions: Any = index.window(after, before)
        domains = set(q.getall("calendar_invitees_domains[]", []))
        domains_type = q.get("calendar_invitees_domains_type", "all")
        recorded_by = set(q.getall("recorded_by[]", []))
        teams = set(q.getall("teams[]", []))
        meeting_type = q.get("meeting_type")
        filtered = bool(domains or recorded_by or teams or meeting_type or domains_type != "all")
        size = self.state.config.page_size
        if filtered:
            full = [(p, build_meeting(index, p)) for p in positions]
            full = [(p, m) for p, m in full if _matches(m, domains, domains_type, recorded_by, teams, meeting_type)]
            chosen = [p for p, _ in full[(page - 1) * size : page * size]]
            more = len(full) > page * size
        else:
            chosen = list(positions[(page - 1) * size : page * size])
            more = len(positions) > page * size
        items = [self.state.encoded(p, flags) for p in chosen]
        if self.state.after_page is not None:
            self.state.after_page(page)
        body = {"limit": size, "next_cursor": encode_cursor({"page_num": page + 1}) if more else None, "items": items}
        return _json(200, body)

    def _recording(self, recording_id: int, part: str) -> Response[bytes]:
        index = self.state.index
        pos = index.position(recording_id)
        if pos is None or recording_id in self.state.recordings_gone:
            raise _Reject(404, {"error": "recording not found"})
        meeting = build_meeting(index, pos)
        ready = index.content_ready(recording_id)
        if part == "transcript":  # a list, never null (the SDK's model): empty until it is ready
            return _json(200, {"transcript": meeting["transcript"] if ready else []})
        return _json(200, {"summary": meeting["default_summary"] if ready else None})

    # --- webhooks -------------------------------------------------------------------------------------

    def _create_webhook(self, account: str, body: bytes) -> Response[bytes]:
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise _Reject(400, {"error": "body is not JSON"}) from None
        if not isinstance(data, dict) or set(data) - WEBHOOK_KEYS:
            raise _Reject(400, {"error": "unknown properties", "allowed": sorted(WEBHOOK_KEYS)})
        url = data.get("destination_url")
        triggered = data.get("triggered_for")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _Reject(400, {"error": "destination_url must be a URL"})
        if not isinstance(triggered, list) or not triggered or set(triggered) - TRIGGERS:
            raise _Reject(400, {"error": "triggered_for needs at least one of " + ", ".join(sorted(TRIGGERS))})
        if not any(data.get(f) is True for f in CONTENT_FLAGS):
            raise _Reject(400, {"error": "at least one include_* flag must be true"})
        hook = self.state.add_webhook(account, url, triggered, {f for f in CONTENT_FLAGS if data.get(f) is True})
        return _json(201, hook.as_json())

    def _delete_webhook(self, account: str, webhook_id: str) -> Response[bytes]:
        hook = self.state.webhooks.get(webhook_id)
        if hook is None or hook.account != account:
            raise _Reject(404, {"error": "webhook not found"})
        del self.state.webhooks[webhook_id]
        return Response(b"", status_code=204)

    # --- OAuth ------------------------------------------------------------------------------------------

    async def _token(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        form = dict(await request.form())
        cfg = self.state.config
        if form.get("client_id") != cfg.oauth_client_id or form.get("client_secret") != cfg.oauth_client_secret:
            return _json(401, {"error": "invalid_client"})
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            account = self.state.auth_codes.pop(str(form.get("code")), None)
            if account is None:
                return _json(400, {"error": "invalid_grant", "error_description": "unknown or used code"})
        elif grant_type == "refresh_token":
            account = self.state.refresh_tokens.pop(str(form.get("refresh_token")), None)
            if account is None:
                return _json(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
        else:
            return _json(400, {"error": "unsupported_grant_type"})
        return _json(200, self.state.issue_tokens(account))

    # --- the fake's own controls -------------------------------------------------------------------------

    async def _admin_meetings(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        data = msgspec.json.decode(await request.body() or b"{}")
        ids = await self.state.add_meetings(
            int(data.get("count", 1)),
            deliver=bool(data.get("deliver", True)),
            content_delay=float(data.get("content_delay", 0.0)),
        )
        return _json(201, {"recording_ids": ids})

    def build(self) -> Litestar:
        app = self

        @get(f"{API}/meetings")
        async def meetings(request: Request[Any, Any, Any]) -> Response[bytes]:
            heavy = any(request.query_params.get(f, "").lower() in ("true", "1") for f in HEAVY_FLAGS)
            return await app._serve(request, heavy, lambda _a, grant: app._list_meetings(request, grant))

        @get(f"{API}/recordings/{{recording_id:int}}/transcript")
        async def transcript(request: Request[Any, Any, Any]) -> Response[bytes]:
            rid = int(request.path_params["recording_id"])
            return await app._serve(request, True, lambda _a, _g: app._recording(rid, "transcript"))

        @get(f"{API}/recordings/{{recording_id:int}}/summary")
        async def summary(request: Request[Any, Any, Any]) -> Response[bytes]:
            rid = int(request.path_params["recording_id"])
            return await app._serve(request, True, lambda _a, _g: app._recording(rid, "summary"))

        @post(f"{API}/webhooks")
        async def create_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
            body = await request.body()
            return await app._serve(request, False, lambda account, _g: app._create_webhook(account, body))

        @delete(f"{API}/webhooks/{{webhook_id:str}}", status_code=200)
        async def delete_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
            webhook_id = str(request.path_params["webhook_id"])
            return await app._serve(request, False, lambda account, _g: app._delete_webhook(account, webhook_id))

        @get(f"{API}/oauth2/authorize")
        async def authorize(request: Request[Any, Any, Any]) -> Response[bytes]:
            q = request.query_params
            if q.get("client_id") != app.state.config.oauth_client_id or q.get("response_type") != "code":
                return _json(400, {"error": "invalid_request"})
            code = app.state.issue_code(q.get("account", app.state.config.default_account))
            sep = "&" if "?" in q.get("redirect_uri", "") else "?"
            location = f"{q.get('redirect_uri')}{sep}code={code}&state={q.get('state', '')}"
            return Response(b"", status_code=302, headers={"Location": location})

        @post(f"{API}/oauth2/token")
        async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._token(request)

        @post("/_fake/faults")
        async def set_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                app.state.faults.update(msgspec.json.decode(await request.body()))
            except (ValueError, TypeError, msgspec.DecodeError) as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, vars(app.state.faults))

        @get("/_fake/requests")
        async def requests_served() -> Response[bytes]:
            return _json(200, app.state.log.as_json())

        @post("/_fake/meetings")
        async def add_meetings(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._admin_meetings(request)

        @post("/_fake/oauth/code")
        async def new_code(request: Request[Any, Any, Any]) -> Response[bytes]:
            data = msgspec.json.decode(await request.body() or b"{}")
            return _json(201, {"code": app.state.issue_code(data.get("account", app.state.config.default_account))})

        return Litestar(
            [
                meetings,
                transcript,
                summary,
                create_webhook,
                delete_webhook,
                authorize,
                token,
                set_faults,
                requests_served,
                add_meetings,
                new_code,
            ],
            logging_config=None,
            openapi_config=None,
        )


Limits = _Limits


def _matches(
    meeting: dict[str, Any],
    domains: set[str],
    domains_type: str,
    recorded_by: set[str],
    teams: set[str],
    meeting_type: str | None,
) -> bool:
    invitees = meeting["calendar_invitees"]
    if domains and not any(i["email_domain"] in domains for i in invitees):
        return False
    if domains_type == "only_internal" and meeting["calendar_invitees_domains_type"] != "only_internal":
        return False
    if domains_type == "one_or_more_external" and meeting["calendar_invitees_domains_type"] != "one_or_more_external":
        return False
    if recorded_by and meeting["recorded_by"]["email"] not in recorded_by:
        return False
    if teams and meeting["recorded_by"]["team"] not in teams:
        return False
    return meeting_type is None or meeting["meeting_type"] == meeting_type
