"""The fake Gong API v2: ``/v2/calls``, ``/v2/calls/extensive``, ``/v2/calls/transcript`` and
``/oauth2/generate-customer-token``.

Shapes follow shared/providers/gong.md: 100 per page with ``records.cursor`` only while more
pages exist, a cursor that must come with the same filter and expires, 404 "No calls found
corresponding to the provided filters" for an empty result, 400 for an empty ``callIds``, Basic
(access key + secret) or Bearer auth, 3 requests per second and a daily quota per company with
``429`` + ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post

from .._controls import FixedWindow, Served, decode_cursor, encode_cursor
from ._data import Selector, build_call
from ._state import GongState

NO_CALLS = "No calls found corresponding to the provided filters"


class _Reject(Exception):
    def __init__(self, status: int, errors: list[str], headers: dict[str, str] | None = None) -> None:
        body = {"requestId": secrets.token_hex(8), "errors": errors}
        self.response = Response(
            msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers
        )


def _ok(body: dict[str, Any]) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=200, media_type="application/json")


def _parse_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise _Reject(400, [f"{name} is not a valid ISO-8601 date-time"]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _Limits:
    second: FixedWindow
    day: FixedWindow


@dataclass
class GongApp:
    state: GongState
    _limits: dict[str, _Limits] = field(default_factory=dict)
    _offset: int | None = None  # page offset of the request being served (for the log)
    _call_ids: list[str] | None = None  # the ``callIds`` filter of the request being served (for the log)
    _window: list[str] | None = None  # the ``fromDateTime``/``toDateTime`` of a request by window (for the log)

    def _company(self, request: Request[Any, Any, Any]) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                key, _, secret = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise _Reject(401, ["Invalid Authorization header"]) from None
            if self.state.config.access_keys.get(key) != secret:
                raise _Reject(401, ["Access denied: invalid access key or secret"])
            return self.state.config.company
        if scheme.lower() == "bearer":
            grant = self.state.access_tokens.get(value.strip())
            if grant is None or grant.expires_at <= time.monotonic():
                raise _Reject(401, ["access token has been revoked or has expired"])
            return grant.company
        raise _Reject(401, ["Missing Authorization header"])

    async def _gate(self, request: Request[Any, Any, Any]) -> str:
        faults = self.state.faults
        status = faults.take_failure()
        if status is not None:
            raise _Reject(status, ["Internal error (injected)"])
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        company = self._company(request)
        if faults.limits_enabled:
            cfg = self.state.config
            limits = self._limits.setdefault(
                company, _Limits(FixedWindow(cfg.requests_per_second, 1.0), FixedWindow(cfg.requests_per_day, 86_400))
            )
            for window in (limits.day, limits.second):
                if window.remaining() == 0:
                    raise _Reject(
                        429, ["Too many requests"], {"Retry-After": str(max(1, math.ceil(window.reset_in())))}
                    )
            limits.second.take()
            limits.day.take()
        return company

    async def _serve(self, request: Request[Any, Any, Any], handler: Any) -> Response[bytes]:
        company = None
        arrived = time.monotonic()
        self._offset = None
        self._call_ids = None
        self._window = None
        try:
            company = await self._gate(request)
            response: Response[bytes] = await handler()
        except _Reject as reject:
            response = reject.response
        self.state.log.add(
            Served(
                arrived,
                request.method,
                request.url.path,
                response.status_code or 200,
                company,
                body=self._logged(),
            )
        )
        return response

    def _logged(self) -> dict[str, Any]:
        """What the log keeps of a request: the page offset and the filter's call ids or window."""
        logged: dict[str, Any] = {"offset": self._offset}
        if self._call_ids is not None:
            logged["callIds"] = self._call_ids
        if self._window is not None:
            logged["window"] = self._window
        return logged

    # --- paging -------------------------------------------------------------------------------------

    def _page(self, kind: str, filt: dict[str, Any], cursor: str | None) -> tuple[list[int], dict[str, Any]]:
        """The positions of one page, and the ``records`` envelope."""
        index = self.state.index
        if "callIds" in filt and filt["callIds"] is not None:
            ids = filt["callIds"]
            if not isinstance(ids, list) or not ids:
                raise _Reject(400, ["callIds must be a non-empty list"])
            self._call_ids = [str(i) for i in ids]
        start = _parse_time(filt.get("fromDateTime"), "fromDateTime")
        end = _parse_time(filt.get("toDateTime"), "toDateTime")
        workspace = filt.get("workspaceId")
        if workspace is not None and workspace != index.workspace_id:
            raise _Reject(404, [NO_CALLS])
        window = index.window(start, end)
        if not filt.get("callIds") and (start or end):
            self._window = [str(filt.get("fromDateTime")), str(filt.get("toDateTime"))]
        if filt.get("callIds"):
            wanted = {str(i) for i in filt["callIds"]}
            positions = sorted(p for i in wanted if (p := index.position(i)) is not None and p in window)
        else:
            positions = list(window) if len(window) < 10_000 else window  # type: ignore[assignment]
        fingerprint = hashlib.sha256(kind.encode() + msgspec.json.encode(filt)).hexdigest()[:16]
        offset = 0
        self._offset = 0
        if cursor is not None and (failed := self.state.faults.take_cursor_failure()) is not None:
            raise _Reject(failed, ["upstream unavailable (injected)"])
        if cursor is not None:
            state = decode_cursor(cursor)
            if state is None or state.get("f") != fingerprint or not isinstance(state.get("o"), int):
                raise _Reject(400, ["Invalid cursor: the request inputs must stay the same between pages"])
            if (
                self.state.faults.take_cursor_expiry()
                or time.time() - state["t"] > self.state.config.cursor_ttl_seconds
            ):
                raise _Reject(400, ["cursor has expired"])
            offset = state["o"]
        self._offset = offset
        size = self.state.config.page_size
        total = len(positions)
        chosen = list(positions[offset : offset + size])
        if not chosen:
            raise _Reject(404, [NO_CALLS])
        records: dict[str, Any] = {
            "totalRecords": total,
            "currentPageSize": len(chosen),
            "currentPageNumber": offset // size,
        }
        if offset + size < total:
            records["cursor"] = encode_cursor({"o": offset + size, "f": fingerprint, "t": time.time()})
        return chosen, records

    async def _json_body(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            raise _Reject(400, ["Request body is not valid JSON"]) from None
        if not isinstance(body, dict) or not isinstance(body.get("filter"), dict):
            raise _Reject(400, ["filter is required"])
        return body

    def _host(self, request: Request[Any, Any, Any]) -> str:
        return self.state.config.app_host

    async def _calls(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        q = request.query_params
        filt = {k: q.get(k) for k in ("fromDateTime", "toDateTime", "workspaceId") if q.get(k) is not None}
        chosen, records = self._page("calls", filt, q.get("cursor"))
        calls = [build_call(self.state.index, p, Selector(), host=self._host(request))["metaData"] for p in chosen]
        return _ok({"requestId": secrets.token_hex(8), "records": records, "calls": calls})

    async def _extensive(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await self._json_body(request)
        chosen, records = self._page("extensive", body["filter"], body.get("cursor"))
        selector = Selector.parse(body.get("contentSelector"))
        calls = [self.state.encoded_call(p, selector) for p in chosen]
        if self.state.after_page is not None and not body["filter"].get("callIds"):
            self.state.after_page(records["currentPageNumber"] + 1)
        return _ok({"requestId": secrets.token_hex(8), "records": records, "calls": calls})

    async def _transcripts(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await self._json_body(request)
        chosen, records = self._page("transcript", body["filter"], body.get("cursor"))
        index = self.state.index
        ready = [p for p in chosen if index.transcript_ready(index.ids[p])]
        return _ok(
            {
                "requestId": secrets.token_hex(8),
                "records": records,
                "callTranscripts": [self.state.encoded_transcript(p) for p in ready],
            }
        )

    async def _token(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        cfg = self.state.config
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        expected = base64.b64encode(f"{cfg.oauth_client_id}:{cfg.oauth_client_secret}".encode()).decode()
        if scheme.lower() != "basic" or value.strip() != expected:
            return Response(
                msgspec.json.encode({"error": "invalid_client"}), status_code=401, media_type="application/json"
            )
        params = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update({k: str(v) for k, v in (await request.form()).items()})
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            company = self.state.auth_codes.pop(str(params.get("code")), None)
        elif grant_type == "refresh_token":
            company = self.state.refresh_tokens.pop(str(params.get("refresh_token")), None)
        else:
            return Response(
                msgspec.json.encode({"error": "unsupported_grant_type"}), status_code=400, media_type="application/json"
            )
        if company is None:
            body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            return Response(msgspec.json.encode(body), status_code=400, media_type="application/json")
        base_url = str(request.base_url).rstrip("/")
        return _ok(self.state.issue_tokens(company, base_url))

    def build(self) -> Litestar:
        app = self

        @get("/v2/calls")
        async def list_calls(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._serve(request, lambda: app._calls(request))

        @post("/v2/calls/extensive", status_code=200)
        async def extensive(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._serve(request, lambda: app._extensive(request))

        @post("/v2/calls/transcript", status_code=200)
        async def transcript(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._serve(request, lambda: app._transcripts(request))

        @post("/oauth2/generate-customer-token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await app._token(request)

        @post("/_fake/faults", status_code=200)
        async def set_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                app.state.faults.update(msgspec.json.decode(await request.body()))
            except (ValueError, TypeError, msgspec.DecodeError) as exc:
                return Response(msgspec.json.encode({"error": str(exc)}), status_code=400)
            return _ok(vars(app.state.faults))

        @get("/_fake/requests")
        async def requests_served() -> Response[bytes]:
            return Response(msgspec.json.encode(app.state.log.as_json()), media_type="application/json")

        @post("/_fake/calls", status_code=201)
        async def add_calls(request: Request[Any, Any, Any]) -> Response[bytes]:
            data = msgspec.json.decode(await request.body() or b"{}")
            ids = app.state.add_calls(
                int(data.get("count", 1)),
                transcript_delay=float(data.get("transcript_delay", 0.0)),
                private=bool(data.get("private", False)),
            )
            return Response(msgspec.json.encode({"call_ids": ids}), status_code=201, media_type="application/json")

        @post("/_fake/oauth/code", status_code=201)
        async def new_code() -> Response[bytes]:
            return Response(
                msgspec.json.encode({"code": app.state.issue_code()}), status_code=201, media_type="application/json"
            )

        return Litestar(
            [list_calls, extensive, transcript, token, set_faults, requests_served, add_calls, new_code],
            logging_config=None,
            openapi_config=None,
        )
