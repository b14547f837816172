"""Admin API: integrations (create, read, list, disable, erase), workspaces (erase), erasure jobs,
and API tokens for the linker and for products.

The integration and erasure routes take ``Authorization: Bearer $CALLSTREAM_GATEWAY_ADMIN_TOKEN`` or
an API token with the ``manage`` scope, which sees and changes only its own workspaces (another
workspace's integration or erasure is a 404, a list shows only its own). Tokens and workspace
erasure stay the admin token's. Secrets go in, never out.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, Parameter

from callstream.contracts import hash_api_token
from callstream.runtime import ApiError, BadCursor, decode_keyset_cursor, get_logger
from callstream.runtime._http import ErrorBody

from . import _fathom_api, _integration_db
from ._access import MANAGE, READ, Caller, manage_caller
from ._context import GatewayContext, admin_guard, decode_body
from ._credentials import BadWebhookSecret, Credentials, seal_credentials, seal_webhook_secret, webhook_key
from ._erasures import ErasureAccepted, Erasures, ErasureView, deregister_webhook
from ._integration_db import IntegrationView
from ._outbound import AllowedHost, UrlNotAllowed, check_api_url, check_public_url

log = get_logger(__name__)

WorkspaceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Trigger = Literal[
    "my_recordings", "shared_external_recordings", "my_shared_with_team_recordings", "shared_team_recordings"
]
MAX_PAGE = 500  # the largest page of GET /v1/integrations?limit=
_CREDENTIAL_FIELDS = {"fathom": ("api_key",), "gong": ("access_key", "access_key_secret")}


class CreateIntegration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workspace_id: WorkspaceId
    provider: Literal["fathom", "gong"]
    credentials: dict[str, str]
    webhook_secret: str | None = None
    base_url: str | None = None
    register_webhook: bool = False
    public_base_url: str | None = None
    triggered_for: Annotated[list[Trigger], msgspec.Meta(min_length=1)] | None = None


class CreatedIntegration(msgspec.Struct):
    id: str
    workspace_id: str
    provider: str
    status: str
    webhook_url: str | None


Scope = Literal["read", "manage"]


def _read_only() -> list[Scope]:
    return ["read"]


class CreateToken(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workspace_ids: Annotated[list[WorkspaceId], msgspec.Meta(min_length=1, max_length=1000)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # read: the linker's reads. manage: also the integration routes and connect sessions of these
    # workspaces (a manage token reads too, so it always carries read).
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=_read_only)


class CreatedToken(msgspec.Struct):
    id: str
    token: str
    scopes: list[str]


def _api_url(value: str | None, allowed: tuple[AllowedHost, ...]) -> str | None:
    if value is None:
        return None
    try:
        return check_api_url(value, allowed)
    except UrlNotAllowed as exc:
        raise ApiError(400, "base_url_not_allowed", str(exc)) from None


def _public_url(value: str | None, allowed: tuple[AllowedHost, ...]) -> str | None:
    if value is None:
        return None
    try:
        return check_public_url(value, allowed)
    except UrlNotAllowed as exc:
        raise ApiError(400, "public_base_url_not_allowed", str(exc)) from None


def _credentials(body: CreateIntegration) -> Credentials:
    wanted = _CREDENTIAL_FIELDS[body.provider]
    given = set(body.credentials)
    if given != set(wanted) or not all(body.credentials[k].strip() for k in wanted):
        raise ApiError(
            400, "invalid_credentials", f"{body.provider} credentials are exactly {{{', '.join(wanted)}}}, non-empty"
        )
    clean = {k: body.credentials[k].strip() for k in wanted}
    if body.provider == "fathom":
        return Credentials(api_key=clean["api_key"])
    return Credentials(access_key=clean["access_key"], access_key_secret=clean["access_key_secret"])


def _integration_id(value: str) -> uuid.UUID:
    parsed = _integration_db.parse_id(value)
    if parsed is None:
        raise ApiError(404, "unknown_integration", "no integration has this id")
    return parsed


# What the routes open to manage tokens answer besides the usual 400/401/404.
_MANAGE_RESPONSES = {403: ResponseSpec(ErrorBody, description="an API token without the manage scope")}


def _unknown_integration() -> ApiError:
    return ApiError(404, "unknown_integration", "no integration has this id")


def admin_router(ctx: GatewayContext, erasures: Erasures) -> list[Router]:
    settings = ctx.settings
    allowed_hosts = settings.api_host_allow_list()
    admin = settings.admin()

    async def caller_of(request: Request[Any, Any, Any]) -> Caller:
        return await manage_caller(request, admin, ctx.db)

    async def require_integration(caller: Caller, key: uuid.UUID) -> None:
        """404 for an integration outside a manage token's workspaces, as for one that does not exist."""
        if caller.is_admin:
            return
        workspace_id = await ctx.db.fetchval("select workspace_id from integrations where id = $1", key)
        if workspace_id is None or not caller.covers(workspace_id):
            raise _unknown_integration()

    @post(
        "/v1/integrations",
        status_code=201,
        summary="Create an integration (admin, or manage token)",
        responses=_MANAGE_RESPONSES,
    )
    async def create_integration(request: Request[Any, Any, Any]) -> Response[CreatedIntegration]:
        caller = await caller_of(request)
        body = await decode_body(request, CreateIntegration)
        # 404, never 403, as everywhere: a token learns nothing of workspaces it does not cover.
        if not caller.covers(body.workspace_id):
            raise ApiError(404, "unknown_workspace", "this token covers no workspace of this id")
        credentials = _credentials(body)
        base_url = _api_url(body.base_url, allowed_hosts)
        public_base_url = _public_url(body.public_base_url, allowed_hosts) or settings.public_base_url
        if body.provider != "fathom" and (body.webhook_secret or body.register_webhook):
            raise ApiError(400, "invalid_request", "webhooks exist only for Fathom integrations")
        if body.webhook_secret and body.register_webhook:
            raise ApiError(400, "invalid_request", "give webhook_secret or register_webhook, not both")
        if body.webhook_secret:
            try:
                webhook_key(body.webhook_secret)
            except BadWebhookSecret as exc:
                raise ApiError(400, "invalid_webhook_secret", str(exc)) from None
        integration_id = uuid.uuid4()
        key = str(integration_id)
        secret = body.webhook_secret
        registered: _fathom_api.RegisteredWebhook | None = None
        api_base = base_url or (settings.fathom_api_url if body.provider == "fathom" else settings.gong_api_url)
        if body.register_webhook:
            if not public_base_url:
                raise ApiError(
                    400, "invalid_request", "register_webhook needs public_base_url (or the gateway setting)"
                )
            triggers = list(body.triggered_for or settings.fathom_triggered_for.split(","))
            destination = public_base_url.rstrip("/") + f"/v1/webhooks/fathom/{key}"
            try:
                registered = await _fathom_api.create_webhook(
                    ctx.http, api_base, _fathom_api.auth_headers(api_key=credentials.api_key), destination, triggers
                )
            except _fathom_api.FathomApiError as exc:
                raise ApiError(502, "provider_error", str(exc)) from None
            secret = registered.secret
        stored_settings: dict[str, Any] = {}
        if body.public_base_url:
            stored_settings["public_base_url"] = public_base_url
        if body.triggered_for:
            stored_settings["triggered_for"] = list(body.triggered_for)
        try:
            await _integration_db.insert(
                ctx.db,
                integration_id=integration_id,
                workspace_id=body.workspace_id,
                provider=body.provider,
                auth_kind="api_key" if body.provider == "fathom" else "basic",
                credentials=seal_credentials(ctx.cipher, key, credentials),
                webhook_secret=seal_webhook_secret(ctx.cipher, key, secret) if secret else None,
                webhook_id=registered.id if registered else None,
                base_url=base_url,
                settings=stored_settings,
            )
        except BaseException:
            if registered is not None:  # do not leave a webhook behind that nothing can verify
                await _delete_quietly(ctx, api_base, {"X-Api-Key": credentials.api_key or ""}, registered.id)
            raise
        await ctx.changed(key)
        view = await _integration_db.view(ctx.db, integration_id, settings.public_base_url)
        assert view is not None
        log.info("integration created", integration_id=key, provider=body.provider, workspace_id=body.workspace_id)
        return Response(
            CreatedIntegration(view.id, view.workspace_id, view.provider, view.status, view.webhook_url),
            status_code=201,
        )

    @get(
        "/v1/integrations/{integration_id:str}", summary="Read an integration (no secrets)", responses=_MANAGE_RESPONSES
    )
    async def read_integration(request: Request[Any, Any, Any], integration_id: FromPath[str]) -> IntegrationView:
        caller = await caller_of(request)
        view = await _integration_db.view(ctx.db, _integration_id(integration_id), settings.public_base_url)
        if view is None or not caller.covers(view.workspace_id):
            raise _unknown_integration()
        return view

    @get(
        "/v1/integrations",
        summary="List integrations (a manage token's: its workspaces'); with limit, keyset pages, newest first",
        description=(
            "Without `limit`: every integration that matches, oldest first (created_at, id). With `limit`: at"
            " most that many, newest first (created_at desc, id desc); when more remain the response has"
            ' `Link: </v1/integrations?...&limit=N&cursor=...>; rel="next"` (the same filters), none on the'
            " last page."
        ),
        responses=_MANAGE_RESPONSES,
        response_headers=[
            ResponseHeader(
                name="Link",
                documentation_only=True,
                description='with limit, when more remain: `</v1/integrations?...&cursor=...>; rel="next"`',
            )
        ],
    )
    async def list_integrations(
        request: Request[Any, Any, Any],
        workspace_id: FromQuery[str | None] = None,
        provider: FromQuery[_integration_db.Provider | None] = None,
        status: FromQuery[_integration_db.Status | None] = None,
        limit: Annotated[int | None, Parameter(ge=1, le=MAX_PAGE, description=f"page size, 1 to {MAX_PAGE}")] = None,
        cursor: Annotated[
            str | None, Parameter(max_length=512, description="from the previous page's Link rel=next (with limit)")
        ] = None,
    ) -> Response[list[IntegrationView]]:
        caller = await caller_of(request)
        flt = _integration_db.IntegrationFilter(
            workspace_id=workspace_id, workspaces=caller.workspaces, provider=provider, status=status
        )
        if limit is None:
            if cursor is not None:
                raise ApiError(400, "invalid_cursor", "cursor pages need limit (the next page's Link has both)")
            # Unbounded on purpose: callers that read it whole must get every row (it once stopped at
            # 1,000 without a word); those that care about size page with limit.
            return Response(await _integration_db.views(ctx.db, flt, settings.public_base_url))
        try:
            after = None if cursor is None else decode_keyset_cursor(cursor)
        except BadCursor as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from None
        items, next_cursor = await _integration_db.page(ctx.db, flt, settings.public_base_url, after, limit)
        if next_cursor is None:
            return Response(items)
        query = {"workspace_id": workspace_id, "provider": provider, "status": status, "limit": limit}
        kept = urlencode({k: v for k, v in query.items() if v is not None} | {"cursor": next_cursor})
        return Response(items, headers={"Link": f'</v1/integrations?{kept}>; rel="next"'})

    @delete(
        "/v1/integrations/{integration_id:str}",
        status_code=200,
        summary="Disable an integration; with ?erase=true erase everything of it (202, a job)",
        responses={
            200: ResponseSpec(IntegrationView, description="disabled"),
            202: ResponseSpec(ErasureAccepted, description="erase=true: the erasure job (the same on a repeat)"),
            503: ResponseSpec(ErrorBody, description="erase=true: recorded, not yet announced; send it again"),
            **_MANAGE_RESPONSES,
        },
    )
    async def disable_integration(
        request: Request[Any, Any, Any], integration_id: FromPath[str], erase: FromQuery[bool] = False
    ) -> Response[IntegrationView | ErasureAccepted]:
        caller = await caller_of(request)
        key = _integration_id(integration_id)
        await require_integration(caller, key)
        if erase:
            return Response(await erasures.erase_integration(key), status_code=202)
        row = await _integration_db.disable(ctx.db, key)
        if row is None:
            raise ApiError(404, "unknown_integration", "no integration has this id")
        await ctx.changed(integration_id)
        log.info("integration disabled", integration_id=integration_id)
        # Fathom unreachable: disabled anyway (the gateway refuses its deliveries); the webhook is
        # kept on record to retry.
        await deregister_webhook(ctx, key, row)
        view = await _integration_db.view(ctx.db, key, settings.public_base_url)
        assert view is not None
        return Response(view, status_code=200)

    @delete(
        "/v1/workspaces/{workspace_id:str}",
        status_code=202,
        summary="Erase everything of a workspace: every integration of it, its tokens' access to it (a job)",
        responses={503: ResponseSpec(ErrorBody, description="recorded, not yet announced; send it again")},
    )
    async def erase_workspace(workspace_id: FromPath[str]) -> Response[ErasureAccepted]:
        return Response(await erasures.erase_workspace(workspace_id), status_code=202)

    @get(
        "/v1/erasures/{erasure_id:str}",
        summary="An erasure job's state, each service's part and counts",
        responses=_MANAGE_RESPONSES,
    )
    async def read_erasure(request: Request[Any, Any, Any], erasure_id: FromPath[str]) -> ErasureView:
        caller = await caller_of(request)
        job = await erasures.job(erasure_id)
        if job is None or not caller.covers(job.workspace_id):
            raise ApiError(404, "unknown_erasure", "no erasure has this id")
        return job

    @post("/v1/tokens", status_code=201, summary="Issue an API token of named workspaces (scopes read, manage)")
    async def create_token(request: Request[Any, Any, Any]) -> Response[CreatedToken]:
        body = await decode_body(request, CreateToken)
        scopes = [READ, MANAGE] if MANAGE in body.scopes else [READ]
        token = "cst_" + secrets.token_urlsafe(32)
        token_id = uuid.uuid4()
        await ctx.db.execute(
            "insert into api_tokens (id, name, token_hash, workspace_ids, scopes) values ($1, $2, $3, $4, $5)",
            token_id,
            body.name,
            hash_api_token(token),
            sorted(set(body.workspace_ids)),
            scopes,
        )
        log.info("api token issued", token_id=str(token_id), workspaces=len(set(body.workspace_ids)), scopes=scopes)
        return Response(CreatedToken(str(token_id), token, scopes), status_code=201)

    @delete("/v1/tokens/{token_id:str}", status_code=204, summary="Revoke an API token")
    async def revoke_token(token_id: FromPath[str]) -> None:
        key = _integration_db.parse_id(token_id)
        found = key is not None and await ctx.db.fetchval(
            "update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = $1 returning id", key
        )
        if not found:
            raise ApiError(404, "unknown_token", "no API token has this id")
        log.info("api token revoked", token_id=token_id)

    return [
        Router(
            path="/",
            route_handlers=[create_integration, read_integration, list_integrations, disable_integration, read_erasure],
            tags=["admin"],
        ),
        Router(
            path="/",
            guards=[admin_guard(settings)],
            route_handlers=[erase_workspace, create_token, revoke_token],
            tags=["admin"],
        ),
    ]


async def _delete_quietly(ctx: GatewayContext, base_url: str, headers: dict[str, str], webhook_id: str) -> None:
    try:
        await _fathom_api.delete_webhook(ctx.http, base_url, headers, webhook_id)
    except _fathom_api.FathomApiError as exc:
        log.warning("fathom webhook left behind", webhook_id=webhook_id, error=str(exc))
