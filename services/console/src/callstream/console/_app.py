"""The console's routes: sign-in, the pages, their forms (post, then 303 to a page) and the
progress stream proxied from the scheduler (so a browser needs no service token).

Sessions are litestar's cookie sessions (AES-GCM: the cookie is encrypted and authenticated, so it
cannot be read or forged without the key), HttpOnly and SameSite=Lax; every form carries the CSRF
token of litestar's ``CSRFConfig``. A request without a session is sent to ``/login``."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from litestar import Litestar, Request, Response, Router, get, post
from litestar.config.app import AppConfig
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Stream, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from callstream.runtime import create_app, get_logger

from . import _rows
from . import _views as v
from ._backend import Backend, BackendError
from ._settings import Settings

__all__ = ["build_app"]

log = get_logger(__name__)
HERE = Path(__file__).parent
MESSAGES_PER_PAGE = 50
INTEGRATIONS_PER_PAGE = 50
# The overview lists at most this many integrations that need a person (the counts are of all; the
# scheduler's most): a failing one refused its credentials counts as "needs reconnect" once listed.
ATTENTION_ROWS = 500
# The list's status words the gateway decides alone, and its status of each: the list pages them.
GATEWAY_WORDS = {"disabled": "disabled", "erased": "erased"}
# The words the sync state decides, as the scheduler's filters (``status`` as its states word it):
# the list pages those states. "needs reconnect" also takes failing ones, kept if refused.
STATE_WORDS: dict[str, dict[str, list[str]]] = {
    "healthy": {"status": ["success"], "integration_status": ["active"]},
    "syncing": {"status": ["syncing"], "integration_status": ["active"]},
    "failing": {"status": ["error"], "integration_status": ["active"]},
    "not synced yet": {"status": ["pending"], "integration_status": ["active"]},
    "needs reconnect": {"status": ["reauth_required", "error"], "integration_status": ["active", "reauth_required"]},
}
# Pages of states one list page reads at most when every row of a page changed word (failing ones
# read for "needs reconnect" that were not refused): then "Older" goes on from there.
WORD_PAGES = 10
MAX_TOKEN_LENGTH = 512  # longer is no token of ours: not sent to the gateway at all
T = TypeVar("T")


class SignInRequired(NotAuthorizedException):
    """No session: the page handler's exception handler sends the browser to /login."""


def _signed_in_guard(max_seconds: float) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """Pages need a session younger than ``max_seconds`` (the cookie's own expiry moves with each
    write of the session; a sign-in does not)."""

    def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        session: Any = connection.scope.get("session")
        if not isinstance(session, dict) or not session.get("signed_in"):
            raise SignInRequired()
        if time.time() - float(session.get("since", 0)) > max_seconds:
            raise SignInRequired()

    return signed_in


def _local_path(value: str | None) -> str:
    """Only a path of this site may be a ``next`` (never ``//evil.example`` or a URL)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _flash(request: Request[Any, Any, Any], tone: str, text: str) -> None:
    request.session["flash"] = {"tone": tone, "text": text}


def _see(path: str) -> Redirect:
    return Redirect(path, status_code=303)


def _problem(exc: BackendError) -> str:
    """What happened, what it means, what to do."""
    if exc.code == "token_refused":
        return f"The {exc.service} refused your sign-in token (revoked?): sign out and sign in again."
    if exc.code == "operator_only":
        return f"Only the operator's sign-in may use the {exc.service}'s admin API."
    if exc.unreachable:
        return f"The {exc.service} could not be reached ({exc.detail}). Check that it runs: ./dev status."
    if exc.status == 401:
        return f"The {exc.service} refused the console's token: set CALLSTREAM_CONSOLE_{exc.service.upper()}_TOKEN."
    return f"The {exc.service} answered {exc.status} {exc.code}: {exc.detail}"


async def _nothing() -> list[Any]:
    return []


async def _maybe(call: Awaitable[T]) -> T | BackendError:
    try:
        return await call
    except BackendError as exc:
        return exc


def _operator(request: Request[Any, Any, Any]) -> bool:
    """Signed in with the console's operator token (not a workspace's manage token)."""
    return request.scope.get("session") is None or not request.session.get("token")


def _page(request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any) -> Template:
    flash = request.session.pop("flash", None) if request.scope.get("session") is not None else None
    return Template(
        template_name=name,
        context={"flash": flash, "path": request.url.path, "operator": _operator(request), **context},
        status_code=status_code,
    )


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, SignInRequired):
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect("/login?" + urlencode({"next": wanted}), status_code=303)
    if isinstance(exc, BackendError):
        # Not there (404) or deleted at its provider or by retention (410); anything else is the
        # service failing the console.
        status = exc.status if exc.status in (404, 410) else 502
        title = {404: "Not found", 410: "Gone"}.get(status, "A service did not answer as expected")
        text = _problem(exc)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        title = "Not found" if status == 404 else f"Error {status}"
        text = str(exc.detail)
    else:
        log.error("console page failed", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        status, title, text = 500, "Something went wrong", "An unexpected error occurred; see the console's log."
    return _page(request, "error.html", status_code=status, title=title, text=text)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _row(integration: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    """A row of the overview or the list: ``i`` the integration, ``s`` its sync state (None before the
    scheduler saw it), ``status`` the word and tone shown (``_with_health`` may change it)."""
    return {"i": integration, "s": state, "status": v.integration_status(integration, state)}


def _refused_request(exc: BackendError, problems: list[str]) -> bool:
    """A cursor or filter a service refuses (400) is the request's fault: said on the page, which
    answers 400 (True). Anything else is the service failing the console: raised for the error page."""
    if exc.status != 400:
        raise exc
    problems.append(_problem(exc))
    return True


def _gathered_states(answers: list[Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    """Sync states by integration from several answers; each failed answer said once in ``problems``."""
    for failed in {_problem(a) for a in answers if isinstance(a, BackendError)}:
        problems.append(f"Sync states are missing: {failed}")
    return {s["integration_id"]: s for a in answers if isinstance(a, list) for s in a}


def _problem_of(row: dict[str, Any]) -> str:
    """What is wrong with a row that needs a person, in words (a stuck run's reason comes from its health)."""
    state, status = row["s"] or {}, row["status"]
    if status.word == "failing":
        failures = state.get("consecutive_failures") or 0
        return f"{state.get('last_error') or 'the last run failed'} ({failures} in a row; retried with backoff)"
    return str(status.hint)


def _state_row(state: dict[str, Any]) -> dict[str, Any]:
    """A row of a page made from a sync state alone (it names its integration's provider, workspace
    and the gateway's status): what the overview shows without the gateway's list."""
    integration = {
        "id": state["integration_id"],
        "workspace_id": state["workspace_id"],
        "provider": state["provider"],
        "status": state["integration_status"],
        "created_at": state.get("created_at"),
    }
    return _row(integration, state)


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _sync_body(form: dict[str, str]) -> dict[str, Any]:
    preset = form.get("preset", "")
    if preset in v.PRESETS:
        return dict(v.PRESETS[preset])
    if preset != "range":
        raise ValueError("choose one of the sync buttons")
    start = _date(form.get("from", ""))
    if start is None:
        raise ValueError("a custom range needs a start date (YYYY-MM-DD)")
    body: dict[str, Any] = {"mode": "range", "from": f"{start.isoformat()}T00:00:00Z"}
    if form.get("to", "").strip():
        end = _date(form["to"])
        if end is None or end < start:
            raise ValueError("the end date must be a date on or after the start")
        # The end day is included: the window ends at the next midnight (UTC), not after now.
        until = min(datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC), datetime.now(tz=UTC))
        body["to"] = until.isoformat().replace("+00:00", "Z")
    return body


def _new_integration(form: dict[str, str]) -> dict[str, Any]:
    provider = form.get("provider", "")
    workspace = form.get("workspace_id", "").strip()
    if not workspace:
        raise ValueError("a workspace id is needed (letters, digits, '_' or '-')")
    if provider == "fathom":
        credentials = {"api_key": form.get("api_key", "").strip()}
    elif provider == "gong":
        credentials = {
            "access_key": form.get("access_key", "").strip(),
            "access_key_secret": form.get("access_key_secret", "").strip(),
        }
    else:
        raise ValueError("choose Fathom or Gong")
    if not all(credentials.values()):
        raise ValueError(f"fill in every {provider.title()} credential")
    body: dict[str, Any] = {"workspace_id": workspace, "provider": provider, "credentials": credentials}
    if form.get("base_url", "").strip():
        body["base_url"] = form["base_url"].strip()
    return body


# A connect session's ``error`` codes (the gateway's): what happened, what it means, what to do.
CONNECT_ERRORS: dict[str, str] = {
    "session_used": "This connect link was already opened once. Each link works once: press Connect again.",
    "session_expired": "The connect link expired (it lasts 10 minutes). Press Connect again.",
    "browser_mismatch": "The sign-in at the provider finished in another browser than the one that started it."
    " Start again and finish in the same browser.",
    "invalid_state": "The provider sent back an unknown or already used request (a reload or the back button?)."
    " Press Connect again.",
    "expired_state": "The sign-in at the provider took longer than 10 minutes. Press Connect again.",
    "authorization_denied": "Access was not granted at the provider (cancelled, or the account may not"
    " allow it). Press Connect again and allow access, or ask the account's admin.",
    "invalid_grant": "The provider refused the sign-in's code (used or expired). Press Connect again.",
    "provider_error": "The provider's token service failed. Try again in a few minutes.",
    "base_url_not_allowed": "The provider named an API host the gateway may not call"
    " (CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS). Ask the operator to allow it.",
    "oauth_not_configured": "No OAuth app is configured for this provider at the gateway"
    " (CALLSTREAM_GATEWAY_<PROVIDER>_CLIENT_ID and _CLIENT_SECRET). Add by API key instead, or ask the operator.",
    "integration_disabled": "The integration was disabled meanwhile; connecting does not re-enable it. Connect anew.",
    "unknown_integration": "The integration was erased meanwhile. Connect anew.",
}


def _connect_error(code: str) -> str:
    known = CONNECT_ERRORS.get(code)
    if known:
        return f"Connecting failed ({code}): {known}"
    return f"Connecting failed ({code or 'no reason given'}). Press Connect again; if it keeps failing, see the gateway's log."


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    data = await request.form()
    return {k: str(val) for k, val in data.items()}


def build_app(settings: Settings, *, backend: Backend | None = None) -> Litestar:
    key = settings.cookie_key()
    operator = settings.admin()
    holder: dict[str, Backend] = {}

    def api(request: Request[Any, Any, Any]) -> Backend:
        """The backend as the signed-in token may use it: the service tokens for the operator, the
        workspace's own token for a manage sign-in (the services then scope every answer)."""
        token = request.session.get("token") if request.scope.get("session") is not None else None
        return holder["backend"].scoped(str(token)) if token else holder["backend"]

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        holder["backend"] = backend or Backend(settings)
        try:
            yield
        finally:
            if backend is None:
                await holder["backend"].aclose()

    session = CookieBackendConfig(
        secret=key,
        key="callstream_console",
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        exclude=["/health", "/metrics", "/static", "/schema"],
    )

    def with_sessions(config: AppConfig) -> AppConfig:
        # On the app, not a router: a router is deep-copied when registered, and the session
        # middleware's cipher cannot be (create_app sets the app's own middleware list).
        config.middleware.append(session.middleware)
        return config

    # ---- sign-in --------------------------------------------------------------------------------
    @get("/login", name="login")
    async def login_page(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template | Redirect:
        if request.session.get("signed_in"):
            return _see(_local_path(next))
        return _page(request, "login.html", next=_local_path(next), closed=not operator.configured)

    @post("/login")
    async def login(request: Request[Any, Any, Any]) -> Redirect:
        form = await _form(request)
        wanted = _local_path(form.get("next"))
        token = form.get("token", "").strip()
        if operator.accepts(token):
            request.set_session({"signed_in": True, "since": int(time.time())})
            log.info("console sign-in", kind="operator")
            return _see(wanted)
        refusal = await _workspace_token_refusal(token)
        if refusal:
            log.info("console sign-in refused")
            _flash(request, "bad", refusal)
            return _see("/login?" + urlencode({"next": wanted}))
        # Kept only in the encrypted session cookie (AES-GCM): never rendered, never logged.
        request.set_session({"signed_in": True, "since": int(time.time()), "token": token})
        log.info("console sign-in", kind="manage")
        return _see(wanted)

    async def _workspace_token_refusal(token: str) -> str | None:
        """None when ``token`` is a workspace API token with the manage scope (the gateway's answer to
        listing integrations with it), else why it cannot sign in."""
        if not (20 <= len(token) <= MAX_TOKEN_LENGTH) or not token.isascii() or not token.isprintable():
            return "That token is neither the console's operator token nor a workspace API token."
        try:
            await holder["backend"].scoped(token).integrations_page(1)
        except BackendError as exc:
            if exc.code == "insufficient_scope":
                return "That workspace token may only read: sign in with a token that has the manage scope."
            if exc.status in (401, 403):
                return "That token is neither the console's operator token nor a workspace API token with manage."
            return _problem(exc)
        return None

    @post("/logout")
    async def logout(request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return _see("/login")

    # ---- overview -------------------------------------------------------------------------------
    async def _states(
        request: Request[Any, Any, Any],
        workspaces: list[str],
        problems: list[str],
    ) -> dict[str, dict[str, Any]]:
        """The sync state of every integration of ``workspaces``, one request each: a workspace's
        sign-in's few (the operator's pages read the scheduler's summary or a page of states, never
        this). What failed goes to ``problems`` (rows without a state would read "not synced yet"
        unexplained)."""
        answers = await asyncio.gather(*(_maybe(api(request).sync_states(w)) for w in workspaces))
        return _gathered_states(answers, problems)

    async def _healths(request: Request[Any, Any, Any], ids: list[str]) -> dict[str, dict[str, Any]]:
        """The health of ``ids``: the operator's in batches, a workspace's sign-in one by one (its
        token may read its own integrations' health, not the batch)."""
        if _operator(request) and len(ids) > 1:
            batch = await _maybe(api(request).healths(ids))
            if isinstance(batch, list):
                return {h["integration_id"]: h for h in batch}
        answers = await asyncio.gather(*(_maybe(api(request).health(i)) for i in ids))
        return {i: h for i, h in zip(ids, answers, strict=True) if isinstance(h, dict)}

    async def _with_health(
        request: Request[Any, Any, Any],
        rows: list[dict[str, Any]],
        words: tuple[str, ...] = ("syncing", "failing"),
        known: dict[str, dict[str, Any]] | None = None,
        problems: list[str] | None = None,
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Each row's status made with its health where that can change it, for rows whose status
        is one of ``words``: a failing one may be a refused credential ("needs reconnect"; the same
        word on the overview and the list), and only a syncing run can be stuck (the overview's).
        The healths are asked unless ``known`` (the scheduler's summary carries them)."""
        asked = [r for r in rows if r["status"].word in words]
        healths = known if known is not None else await _healths(request, [r["i"]["id"] for r in asked])
        missing = sum(1 for r in asked if r["i"]["id"] not in healths)
        if missing and problems is not None:
            problems.append(
                f"The health of {missing} integration(s) could not be read: a failing one whose provider"
                " refused its credentials reads 'failing' here, not 'needs reconnect'."
            )
        judged = []
        for row in asked:
            health = healths.get(row["i"]["id"])
            if health is not None:
                row["status"] = v.integration_status(row["i"], row["s"], health)
                judged.append((row, health))
        return judged

    async def _overview_rows(
        request: Request[Any, Any, Any], problems: list[str]
    ) -> tuple[collections.Counter[str], list[dict[str, Any]], int, dict[str, dict[str, Any]] | None, bool]:
        """Every integration counted by the word the pages show for it, the rows a person may need
        to look at (syncing, failing, needs reconnect), how many there are, and their healths where
        they came along. The operator's come from the scheduler's summary, health included (counts
        and those rows, not every state: bench/console); a workspace's sign-in, whose integrations
        are few, reads them all."""
        if _operator(request):
            summary = await api(request).sync_summary(ATTENTION_ROWS)
            counts: collections.Counter[str] = collections.Counter()
            for c in summary["counts"]:
                word = v.integration_status({"status": c["integration_status"]}, {"status": c["status"]}).word
                counts[word] += c["count"]
            attention = summary["attention"]
            healths = {a["state"]["integration_id"]: a["health"] for a in attention}
            listed = [_state_row(a["state"]) for a in attention]
            return counts, listed, int(summary["attention_total"]), healths, True
        integrations = [i for i in await api(request).integrations() if i["status"] != "erased"]
        said = len(problems)
        states = await _states(request, sorted({i["workspace_id"] for i in integrations}), problems)
        rows = [_row(i, states.get(i["id"])) for i in integrations]
        listed = [r for r in rows if r["status"].word in v.ATTENTION_WORDS]
        # Without every state the words are guesses ("not synced yet"): not counted as known.
        return collections.Counter(r["status"].word for r in rows), listed, len(listed), None, len(problems) == said

    @get("/", name="overview")
    async def overview(request: Request[Any, Any, Any]) -> Template:
        # Readiness detail is the operator's (a workspace's sign-in sees its integrations only).
        problems: list[str] = []
        found, readiness, dlq_depth = await asyncio.gather(
            _maybe(_overview_rows(request, problems)),
            api(request).readiness_all() if _operator(request) else _nothing(),
            api(request).dlq_depth(),
        )
        if isinstance(found, BackendError):  # counts unknown: never "all clear" nor "no integrations"
            problems.append(_problem(found))
            counts, rows, attention_total, healths, complete = collections.Counter[str](), [], 0, None, False
        else:
            counts, rows, attention_total, healths, complete = found
        # A failing row whose provider refused the credentials reads "needs reconnect" with its health:
        # the counts follow the rows judged. A syncing row needs a person only when its run is stuck.
        counts.subtract(r["status"].word for r in rows)
        problems_of: dict[str, str] = {}
        for row, health in await _with_health(request, rows, known=healths, problems=problems):
            for check in health.get("checks", []):
                if check["name"] == "sync_ready" and not check["ok"]:
                    problems_of[row["i"]["id"]] = f"stuck: {check['reason']}"
        counts.update(r["status"].word for r in rows)
        rows = [r for r in rows if r["status"].word != "syncing" or r["i"]["id"] in problems_of]
        if healths is None:  # a workspace's sign-in listed every syncing row: those not stuck are fine
            attention_total = len(rows)
        for row in rows:
            row["problem"] = problems_of.get(row["i"]["id"]) or _problem_of(row)
        order = {"bad": 0, "warn": 1, "busy": 2, "ok": 3, "off": 4}
        rows.sort(key=lambda r: (order.get(r["status"].tone, 5), r["i"]["workspace_id"], r["i"]["id"]))
        now = datetime.now(tz=UTC)
        return _page(
            request,
            "overview.html",
            rows=rows,
            table=_rows.overview_table(rows, now),
            attention_total=attention_total,
            counts=[(word, counts[word]) for word in v.LIST_STATUSES if counts[word] > 0],
            counted=complete,
            tones=v.WORD_TONES,
            total=sum(max(n, 0) for n in counts.values()),
            failing=counts["failing"],
            reconnect=counts["needs reconnect"],
            stuck=[r for r in rows if r["i"]["id"] in problems_of],
            readiness=readiness,
            not_ready=[r for r in readiness if not r.ready],
            dlq_depth=dlq_depth,
            problems=problems,
        )

    # ---- integrations -----------------------------------------------------------------------------
    async def _states_of(
        request: Request[Any, Any, Any], page: list[dict[str, Any]], problems: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The sync states of a page's integrations: the operator's in one request, a workspace's
        sign-in one request per workspace on the page (its token must name the workspace); what
        failed goes to ``problems``."""
        by_workspace: dict[str | None, list[str]] = {}
        for i in page:
            by_workspace.setdefault(None if _operator(request) else i["workspace_id"], []).append(i["id"])
        answers = await asyncio.gather(
            *(_maybe(api(request).sync_states_of(ids, workspace_id=w)) for w, ids in by_workspace.items())
        )
        return _gathered_states(answers, problems)

    async def _every_row(
        request: Request[Any, Any, Any], workspace_id: str, provider: str, status: str, problems: list[str]
    ) -> list[dict[str, Any]]:
        """Every integration whose word is ``status`` (a word the sync state and health decide, so
        not one the gateway can filter by): the whole list read and judged, newest first. For a
        workspace's sign-in naming no workspace (its token may not page every state; its
        integrations are few)."""
        everything = await api(request).integrations(workspace_id or None)
        shown = [i for i in everything if not provider or i["provider"] == provider]
        states = await _states(request, sorted({i["workspace_id"] for i in shown}), problems)
        rows = [_row(i, states.get(i["id"])) for i in shown]
        await _with_health(request, rows, ("failing",), problems=problems)  # only those can change word
        rows = [r for r in rows if r["status"].word == status]
        rows.sort(key=lambda r: r["i"]["created_at"], reverse=True)
        return rows

    @get("/integrations", name="integrations")
    async def integrations_page(
        request: Request[Any, Any, Any],
        workspace_id: FromQuery[str | None] = None,
        provider: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> Template:
        filters = {"workspace_id": (workspace_id or "").strip(), "provider": provider or "", "status": status or ""}
        problems = []
        if filters["provider"] not in ("", "fathom", "gong"):
            problems.append(f"provider {filters['provider']!r} is not one of fathom, gong.")
        if filters["status"] and filters["status"] not in v.LIST_STATUSES:
            problems.append(f"status {filters['status']!r} is not one of {', '.join(v.LIST_STATUSES)}.")
        rows: list[dict[str, Any]] = []
        next_cursor = None
        refused = bool(problems)  # the request's own fault (a 400); a service failing is said, not refused
        if problems:
            pass
        elif filters["status"] in STATE_WORDS and (_operator(request) or filters["workspace_id"]):
            # A word the sync state decides: a page of the scheduler's states so filtered (they name
            # their integration), its failing rows judged with their health; a page may show fewer
            # than it read (a failing one refused its credentials reads "needs reconnect").
            read = 0
            while True:  # a page whose every row changed word is skipped, up to WORD_PAGES read
                try:
                    paged, next_cursor = await api(request).sync_states_page(
                        INTEGRATIONS_PER_PAGE,
                        cursor,
                        workspace_id=filters["workspace_id"],
                        provider=filters["provider"],
                        **STATE_WORDS[filters["status"]],
                    )
                except BackendError as exc:
                    refused = _refused_request(exc, problems)
                    break
                read += 1
                found = [_state_row(s) for s in paged]
                await _with_health(request, found, ("failing",), problems=problems)
                rows = [r for r in found if r["status"].word == filters["status"]]
                if rows or next_cursor is None or read >= WORD_PAGES:
                    break
                cursor = next_cursor
        elif filters["status"] in ("", *GATEWAY_WORDS):
            # A page of the gateway's list (the words it knows itself are its filter), then the states
            # of that page and the health of its failing rows: never every integration (bench/console).
            try:
                page, next_cursor = await api(request).integrations_page(
                    INTEGRATIONS_PER_PAGE,
                    cursor,
                    workspace_id=filters["workspace_id"],
                    provider=filters["provider"],
                    status=GATEWAY_WORDS.get(filters["status"]),
                )
            except BackendError as exc:
                refused = _refused_request(exc, problems)
                page = []
            states = await _states_of(request, page, problems)
            rows = [_row(i, states.get(i["id"])) for i in page]
            await _with_health(request, rows, ("failing",), problems=problems)  # only those can change word
        else:
            rows = await _every_row(request, filters["workspace_id"], filters["provider"], filters["status"], problems)
        query = {k: val for k, val in filters.items() if val}
        now = datetime.now(tz=UTC)
        return _page(
            request,
            "integrations.html",
            status_code=400 if refused else 200,
            rows=rows,
            table=_rows.list_table(rows, now),
            workspace_id=filters["workspace_id"],
            provider=filters["provider"],
            status=filters["status"],
            statuses=v.LIST_STATUSES,
            filtered=bool(query),
            older="/integrations?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else None,
            newest=("/integrations?" + urlencode(query)) if cursor else None,
            problems=problems,
            none_yet=not rows and not query and not cursor and not problems,
        )

    @post("/integrations")
    async def add_integration(request: Request[Any, Any, Any]) -> Redirect:
        form = await _form(request)
        try:
            created = await api(request).create_integration(_new_integration(form))
        except ValueError as exc:
            _flash(request, "bad", str(exc))
            return _see("/integrations#add")
        except BackendError as exc:
            _flash(request, "bad", _problem(exc))
            return _see("/integrations#add")
        _flash(
            request,
            "ok",
            f"{created['provider'].title()} integration added to {created['workspace_id']}. Run Test sync (latest 5) to check it works.",
        )
        return _see(f"/integrations/{created['id']}")

    @post("/integrations/connect")
    async def connect(request: Request[Any, Any, Any]) -> Redirect:
        """A connect session at the gateway that returns here; the browser goes on to its URL."""
        form = await _form(request)
        provider, workspace = form.get("provider", ""), form.get("workspace_id", "").strip()
        if provider not in ("fathom", "gong"):
            _flash(request, "bad", "choose Fathom or Gong")
            return _see("/integrations#connect")
        if not workspace:
            _flash(request, "bad", "a workspace id is needed (letters, digits, '_' or '-')")
            return _see("/integrations#connect")
        body = {
            "workspace_id": workspace,
            "provider": provider,
            "return_url": settings.public_base() + "/integrations/connected",
        }
        reconnect = form.get("integration_id", "")
        if _is_uuid(reconnect):  # "Reconnect" on an integration's page: the same integration, new tokens
            body["integration_id"] = reconnect
        try:
            session = await api(request).connect_session(body)
        except BackendError as exc:
            if exc.code == "oauth_not_configured":
                _flash(request, "bad", _connect_error(exc.code))
            elif exc.code == "return_url_not_allowed":
                _flash(
                    request,
                    "bad",
                    f"The gateway may not send the browser back to {settings.public_base()}: add it to"
                    " CALLSTREAM_GATEWAY_RETURN_URL_ALLOW, or set CALLSTREAM_CONSOLE_PUBLIC_URL to the console's address.",
                )
            else:
                _flash(request, "bad", _problem(exc))
            return _see("/integrations#connect")
        return Redirect(str(session["url"]), status_code=303)

    @get("/integrations/connected")
    async def connected(
        request: Request[Any, Any, Any],
        status: FromQuery[str | None] = None,
        integration_id: FromQuery[str | None] = None,
        error: FromQuery[str | None] = None,
    ) -> Redirect:
        """Where a connect session ends: the integration's page, or what went wrong."""
        if status == "connected" and integration_id and _is_uuid(integration_id):
            _flash(
                request,
                "ok",
                "Connected. Run Test sync (latest 5) to check it works; scheduled syncs start on their own.",
            )
            return _see(f"/integrations/{integration_id}")
        _flash(request, "bad", _connect_error(error or ""))
        return _see("/integrations#connect")

    @get("/integrations/{integration_id:uuid}", name="integration")
    async def integration_page(request: Request[Any, Any, Any], integration_id: FromPath[Any]) -> Template:
        key = str(integration_id)
        integration = await api(request).integration(key)
        state, health, runs = await asyncio.gather(
            _maybe(api(request).sync_state(key)), _maybe(api(request).health(key)), _maybe(api(request).runs(key))
        )
        problems = [_problem(x) for x in (state, health, runs) if isinstance(x, BackendError) and x.status != 404]
        runs_list = runs if isinstance(runs, list) else []
        active = next((r for r in runs_list if r["status"] in ("queued", "running")), None)
        state_value = state if isinstance(state, dict) else None
        return _page(
            request,
            "integration.html",
            i=integration,
            s=state_value,
            status=v.integration_status(integration, state_value, health if isinstance(health, dict) else None),
            health=health if isinstance(health, dict) else None,
            runs=runs_list,
            active=active,
            problems=problems,
            today=datetime.now(tz=UTC).date().isoformat(),
        )

    @post("/integrations/{integration_id:uuid}/syncs")
    async def start_sync(request: Request[Any, Any, Any], integration_id: FromPath[Any]) -> Redirect:
        key = str(integration_id)
        form = await _form(request)
        try:
            await api(request).start_sync(key, _sync_body(form))
        except ValueError as exc:
            _flash(request, "bad", str(exc))
        except BackendError as exc:
            if exc.code == "run_active":
                _flash(request, "warn", "A sync is already running: watch it below, or cancel it first.")
            elif exc.code == "integration_not_active":
                _flash(
                    request,
                    "bad",
                    "This integration is not active (disabled, or it needs reconnecting): nothing was started.",
                )
            else:
                _flash(request, "bad", _problem(exc))
        else:
            _flash(request, "ok", "Sync started.")
        return _see(f"/integrations/{key}#run")

    @post("/integrations/{integration_id:uuid}/runs/{run_id:uuid}/cancel")
    async def cancel_run(
        request: Request[Any, Any, Any], integration_id: FromPath[Any], run_id: FromPath[Any]
    ) -> Redirect:
        key = str(integration_id)
        try:
            await api(request).cancel(key, str(run_id))
            _flash(request, "ok", "Run cancelled: it stops at its next page; what it stored stays.")
        except BackendError as exc:
            _flash(
                request,
                "warn" if exc.code == "run_finished" else "bad",
                "The run had already finished." if exc.code == "run_finished" else _problem(exc),
            )
        return _see(f"/integrations/{key}#run")

    @get("/integrations/{integration_id:uuid}/runs/{run_id:uuid}/events")
    async def run_events(
        request: Request[Any, Any, Any], integration_id: FromPath[Any], run_id: FromPath[Any]
    ) -> Response[Any]:
        """The scheduler's Server-Sent Events, passed through byte for byte (Last-Event-ID too)."""
        upstream = await api(request).events(str(integration_id), str(run_id), request.headers.get("last-event-id"))
        if upstream.status_code != 200:
            await upstream.aread()
            await upstream.aclose()
            if upstream.status_code == 204:
                return Response(b"", status_code=204)
            return Response({"error": "upstream", "status": upstream.status_code}, status_code=502)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_bytes():
                    yield chunk
            finally:
                await upstream.aclose()

        return Stream(
            chunks(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @post("/integrations/{integration_id:uuid}/disable")
    async def disable(request: Request[Any, Any, Any], integration_id: FromPath[Any]) -> Redirect:
        key = str(integration_id)
        try:
            await api(request).disable_integration(key)
            _flash(
                request, "ok", "Integration disabled: webhooks are refused and nothing is synced. Its messages stay."
            )
        except BackendError as exc:
            _flash(request, "bad", _problem(exc))
        return _see(f"/integrations/{key}")

    @post("/integrations/{integration_id:uuid}/erase")
    async def erase(request: Request[Any, Any, Any], integration_id: FromPath[Any]) -> Redirect:
        key = str(integration_id)
        try:
            job = await api(request).erase_integration(key)
        except BackendError as exc:
            _flash(request, "bad", _problem(exc))
            return _see(f"/integrations/{key}")
        _flash(request, "ok", "Erasure started: every service erases what it keeps of this integration.")
        return _see(f"/erasures/{job['erasure_id']}")

    @get("/erasures/{erasure_id:uuid}", name="erasure")
    async def erasure_page(request: Request[Any, Any, Any], erasure_id: FromPath[Any]) -> Template:
        job = await api(request).erasure(str(erasure_id))
        return _page(request, "erasure.html", job=job, services=("gateway", "scheduler", "normalizer"))

    # ---- dead letters -------------------------------------------------------------------------------
    @get("/dlq", name="dlq")
    async def dlq_page(request: Request[Any, Any, Any]) -> Template:
        if not _operator(request):
            return _page(request, "dlq.html", items=[], depth=None, problem=None)
        letters, depth = await asyncio.gather(_maybe(api(request).dead_letters()), api(request).dlq_depth())
        problem = _problem(letters) if isinstance(letters, BackendError) else None
        items, depth = letters if isinstance(letters, tuple) else ([], depth)  # the list's count is the newer
        for item in items:
            payload = item.get("payload", item.get("data"))
            item["payload_text"] = payload if isinstance(payload, str) else json.dumps(payload, indent=2, default=str)
        return _page(request, "dlq.html", items=items, depth=depth, problem=problem)

    @post("/dlq/{seq:int}/redrive")
    async def redrive(request: Request[Any, Any, Any], seq: FromPath[int]) -> Redirect:
        try:
            await api(request).redrive(seq)
            _flash(request, "ok", f"Dead letter {seq} sent again to its subject.")
        except BackendError as exc:
            _flash(request, "bad", _problem(exc))
        return _see("/dlq")

    @post("/dlq/redrive")
    async def redrive_all(request: Request[Any, Any, Any]) -> Redirect:
        """One batch (the normalizer's bound) of the dead letters up to the newest the page showed:
        those arriving after it, or coming back because their cause is not fixed, stay for a look."""
        up_to = (await _form(request)).get("up_to", "")
        try:
            done = await api(request).redrive_all(int(up_to) if up_to.isdigit() else None)
        except BackendError as exc:
            _flash(request, "bad", _problem(exc))
            return _see("/dlq")
        n = int(done["redriven"])
        text = (
            f"Redrive all: {n} dead letter{'' if n == 1 else 's'} sent again to {'its' if n == 1 else 'their'} subject"
        )
        broker = any(f["error"] != "no_bytes" for f in done["failures"])
        if hollow := int(done["failed"]) - broker:
            # only their count: the normalizer lists the last few, and the operator reads them on this page
            text += f"; {hollow} recorded without their bytes cannot be and stay"
        if broker:
            text += "; the broker did not take one, so it stopped there: try again in a moment"
        if done["remaining"]:
            text += f"; {done['remaining']} more to go: redrive all again"
        _flash(request, "bad" if done["failed"] else "ok", text + ".")
        return _see("/dlq")

    # ---- messages -------------------------------------------------------------------------------------
    @get("/messages", name="messages")
    async def messages_page(
        request: Request[Any, Any, Any],
        workspace_id: FromQuery[str | None] = None,
        integration_id: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
        customer_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> Template:
        given = {"workspace_id": workspace_id, "integration_id": integration_id, "source": source}
        filters = {k: (val or "").strip() for k, val in (given | {"customer_id": customer_id}).items()}
        items: list[dict[str, Any]] = []
        next_cursor = None
        problems: list[str] = []
        status = 200
        # Checked here, before any service is asked, so that a typo reads as what it is.
        if filters["integration_id"] and not _is_uuid(filters["integration_id"]):
            problems.append(f"integration_id {filters['integration_id']!r} is not an integration's id (a uuid).")
        if filters["customer_id"] and not _is_uuid(filters["customer_id"]):
            problems.append(f"customer_id {filters['customer_id']!r} is not a customer's id (a uuid).")
        if filters["source"] and filters["source"] not in ("fathom", "gong"):
            problems.append(f"source {filters['source']!r} is not one of fathom, gong.")
        integration = None
        if problems:
            status = 400
        else:
            if filters["integration_id"]:
                filters["integration_id"] = str(uuid.UUID(filters["integration_id"]))
            # One page of the linker's, across every workspace the sign-in may read unless one is
            # named (it scopes them); an integration named is read beside it for the heading.
            calls: list[Awaitable[Any]] = [
                api(request).messages(
                    **{k: val for k, val in filters.items() if val}, cursor=cursor, limit=MESSAGES_PER_PAGE
                )
            ]
            if filters["integration_id"]:
                calls.append(api(request).integration(filters["integration_id"]))
            page, *named = await asyncio.gather(*(_maybe(c) for c in calls))
            found = named[0] if named else None
            if isinstance(found, BackendError) and found.status == 404:
                status = 404
                problems.append(f"No integration {filters['integration_id']} (or not one your sign-in may read).")
            elif isinstance(found, BackendError):
                problems.append(_problem(found))
            else:
                integration = found
            if status == 404:
                pass
            elif isinstance(page, BackendError):  # a cursor or filter the linker refuses, or the linker down
                status = page.status if page.status in (400, 404) else 502
                problems.append(_problem(page))
            else:
                items, next_cursor = page["items"], page.get("next_cursor")
        query = {k: val for k, val in filters.items() if val}
        return _page(
            request,
            "messages.html",
            status_code=status,
            items=[m | {"length": v.call_length(m.get("duration_seconds"))} for m in items],
            integration=integration,
            filters=filters,
            filtered=bool(query),
            older="/messages?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else None,
            newest=("/messages?" + urlencode(query)) if cursor else None,
            problems=problems,
        )

    @get("/messages/{message_id:uuid}", name="message")
    async def message_page(request: Request[Any, Any, Any], message_id: FromPath[Any]) -> Template:
        message = await api(request).message(str(message_id))
        metadata = message.get("message_metadata") or {}
        participants = metadata.get("participant_details") or metadata.get("invitees") or []
        if not participants and metadata.get("participants"):
            participants = [{"name": n} for n in metadata["participants"]]
        return _page(
            request,
            "message.html",
            m=message,
            metadata_text=json.dumps(metadata, indent=2, sort_keys=True, default=str),
            participants=[p for p in participants if isinstance(p, dict)],
        )

    pages = Router(
        path="/",
        guards=[_signed_in_guard(settings.session_hours * 3600)],
        exception_handlers={HTTPException: _error_page, Exception: _error_page},
        route_handlers=[
            overview, integrations_page, add_integration, connect, connected, integration_page, start_sync, cancel_run, run_events,
            disable, erase, erasure_page, dlq_page, redrive, redrive_all, messages_page, message_page,
        ],
    )  # fmt: skip
    public = Router(
        path="/",
        exception_handlers={HTTPException: _error_page, Exception: _error_page},
        route_handlers=[login_page, login, logout],
    )
    static = create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False)

    def _filters(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters.update(rel=v.relative, utc=v.absolute, duration=v.duration, urlq=quote)
        engine.engine.globals.update(run_status=v.run_status)

    async def backends_answer() -> str | None:
        return None  # the console is ready when it serves; each page says which service is down

    return create_app(
        service="console",
        title="callstream console",
        route_handlers=[pages, public, static],
        checks={"console": backends_answer},
        lifespan=[lifespan],
        on_app_init=[with_sessions],
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_filters
        ),
        csrf_config=CSRFConfig(
            secret=key.hex(),
            cookie_name="callstream_csrf",
            cookie_httponly=True,
            cookie_secure=settings.secure_cookies,
            cookie_samesite="lax",
        ),
    )
