"""Contacts and customers: ``GET /v1/contacts``, ``GET /v1/customers`` and ``GET /v1/customers/{id}``.

Contacts are the external people of a workspace's calls, one per email (the normalizer keeps them,
``contacts`` and ``contact_messages``); customers are the companies. Lists are keyset pages
(``{"items", "next_cursor"}``, ``limit`` at most 200); a customer comes with the first page of its
contacts and of its messages (each with its link) and the cursors that continue them on
``/v1/contacts?customer_id=`` and ``/v1/messages?customer_id=``. Scoped like every linker answer:
a workspace or customer the token cannot see is a 404.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter, QueryParameter

from callstream.runtime import ApiError, BadCursor, KeysetCursor, decode_keyset_cursor, encode_keyset_cursor

from . import _queries as q
from ._auth import Access, not_found
from ._lookup import LinkLookup
from ._schemas import ErrorBody, MessageSummary

__all__ = [
    "MAX_PAGE",
    "ContactOut",
    "ContactPage",
    "CustomerDetail",
    "CustomerPage",
    "CustomerSummary",
    "build_contacts_router",
]

MAX_PAGE = 200
DEFAULT_PAGE = 50
CACHE_CONTROL = CacheControlHeader(private=True, no_cache=True)  # as the other answers: revalidate

WorkspaceQuery = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the workspace")]
Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description=f"at most {MAX_PAGE}")]
Cursor = Annotated[str | None, Parameter(max_length=512, description="next_cursor of the previous page")]

_ERRORS = {
    400: ResponseSpec(ErrorBody, description="a parameter is invalid"),
    401: ResponseSpec(ErrorBody, description="no bearer token, or an unknown or revoked one"),
    404: ResponseSpec(ErrorBody, description="unknown, or not visible to this token"),
}


class CustomerRef(msgspec.Struct, kw_only=True):
    id: str
    name: str | None
    domain: str


class ContactOut(msgspec.Struct, kw_only=True):
    """An external participant of the workspace's calls; ``first_seen``/``last_seen`` are when the
    earliest and latest of its ``call_count`` calls started."""

    id: str
    workspace_id: str
    email: str
    name: str | None
    title: str | None
    customer: CustomerRef | None
    first_seen: datetime
    last_seen: datetime
    call_count: int
    updated_at: datetime


class ContactPage(msgspec.Struct, kw_only=True):
    """Most recently seen first; ``next_cursor`` is null on the last page."""

    items: list[ContactOut]
    next_cursor: str | None


class CustomerSummary(msgspec.Struct, kw_only=True):
    id: str
    workspace_id: str
    domain: str
    name: str | None
    industry: str | None
    website: str | None
    external_system: str | None
    message_count: int
    contact_count: int
    last_message_at: datetime | None
    updated_at: datetime


class CustomerPage(msgspec.Struct, kw_only=True):
    """By domain; ``next_cursor`` is null on the last page."""

    items: list[CustomerSummary]
    next_cursor: str | None


class CustomerDetail(msgspec.Struct, kw_only=True):
    """A customer, the first page of its contacts and of its messages (newest first, each with its
    link); the cursors continue them on ``/v1/contacts`` and ``/v1/messages`` with ``customer_id``."""

    id: str
    workspace_id: str
    domain: str
    name: str | None
    industry: str | None
    website: str | None
    external_system: str | None
    external_id: str | None
    attributes: dict[str, Any]
    message_count: int
    contact_count: int
    last_message_at: datetime | None
    created_at: datetime
    updated_at: datetime
    contacts: list[ContactOut]
    contacts_next_cursor: str | None
    messages: list[MessageSummary]
    messages_next_cursor: str | None


# --- queries (read only, parameterised) ---------------------------------------------------------

_CONTACT_COLUMNS = (
    "c.id, c.workspace_id, c.email, c.name, c.title, c.customer_id, c.first_seen, c.last_seen, c.call_count,"
    " c.updated_at, cu.name as customer_name, cu.domain as customer_domain"
)
_COUNTS = (
    "(select count(*) from messages m where m.customer_id = cu.id) as message_count,"
    " (select max(m.sent_at) from messages m where m.customer_id = cu.id) as last_message_at,"
    " (select count(*) from contacts k where k.customer_id = cu.id) as contact_count"
)
_CUSTOMER_COLUMNS = (
    "cu.id, cu.workspace_id, cu.domain, cu.name, cu.industry, cu.website, cu.external_system, cu.updated_at"
)


@dataclass(frozen=True, slots=True)
class ContactFilter:
    workspace_id: str
    customer_id: uuid.UUID | None = None
    email: str | None = None


async def _contacts(pool: asyncpg.Pool, flt: ContactFilter, after: KeysetCursor | None, limit: int) -> list[Any]:
    args: list[Any] = [flt.workspace_id]
    where = ["c.workspace_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt.customer_id is not None:
        where.append(f"c.customer_id = {arg(flt.customer_id)}")
    if flt.email is not None:
        where.append(f"c.email = {arg(flt.email)}")
    if after is not None and after.at is not None:
        where.append(f"(c.last_seen, c.id) < ({arg(after.at)}, {arg(after.id)})")
    return list(
        await pool.fetch(
            f"select {_CONTACT_COLUMNS} from contacts c left join customers cu on cu.id = c.customer_id"
            f" where {' and '.join(where)} order by c.last_seen desc, c.id desc limit {arg(limit)}",
            *args,
        )
    )


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def _customers(
    pool: asyncpg.Pool, workspace_id: str, domain: str | None, text: str | None, after: str | None, limit: int
) -> list[Any]:
    args: list[Any] = [workspace_id]
    where = ["cu.workspace_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if domain is not None:
        where.append(f"cu.domain = {arg(domain)}")
    if text is not None:
        pattern = arg(_like(text))
        where.append(f"(cu.name ilike {pattern} or cu.domain ilike {pattern})")
    if after is not None:
        where.append(f"cu.domain > {arg(after)}")
    return list(
        await pool.fetch(
            f"select {_CUSTOMER_COLUMNS}, {_COUNTS} from customers cu where {' and '.join(where)}"
            f" order by cu.domain limit {arg(limit)}",
            *args,
        )
    )


async def _customer(pool: asyncpg.Pool, customer_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"select {_CUSTOMER_COLUMNS}, cu.external_id, cu.attributes, cu.created_at, {_COUNTS}"
        " from customers cu where cu.id = $1",
        customer_id,
    )
    return row


# --- cursors ------------------------------------------------------------------------------------


def _encode_domain(domain: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(["d", domain])).decode().rstrip("=")


def _decode_domain(text: str) -> str:
    try:
        tag, domain = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), type=tuple[str, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        tag = ""
    if tag != "d":
        raise ApiError(400, "invalid_cursor", "cursor is not one this service issued")
    return domain


def _decode_contact_cursor(text: str | None) -> KeysetCursor | None:
    if text is None:
        return None
    try:
        cursor = decode_keyset_cursor(text)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return cursor


# --- answers ------------------------------------------------------------------------------------


def _contact(row: asyncpg.Record) -> ContactOut:
    customer = (
        None
        if row["customer_id"] is None
        else CustomerRef(id=str(row["customer_id"]), name=row["customer_name"], domain=row["customer_domain"])
    )
    return ContactOut(
        id=str(row["id"]),
        workspace_id=row["workspace_id"],
        email=row["email"],
        name=row["name"],
        title=row["title"],
        customer=customer,
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        call_count=row["call_count"],
        updated_at=row["updated_at"],
    )


def _contact_page(rows: list[Any], limit: int) -> tuple[list[ContactOut], str | None]:
    page = rows[:limit]
    cursor = encode_keyset_cursor(page[-1]["last_seen"], page[-1]["id"]) if len(rows) > limit else None
    return [_contact(r) for r in page], cursor


def _summary(row: asyncpg.Record) -> CustomerSummary:
    return CustomerSummary(
        id=str(row["id"]),
        workspace_id=row["workspace_id"],
        domain=row["domain"],
        name=row["name"],
        industry=row["industry"],
        website=row["website"],
        external_system=row["external_system"],
        message_count=row["message_count"],
        contact_count=row["contact_count"],
        last_message_at=row["last_message_at"],
        updated_at=row["updated_at"],
    )


def build_contacts_router(
    lookup: LinkLookup, authenticate: Callable[[Request[Any, Any, Any]], Awaitable[Access]]
) -> Router:
    @get(
        "/contacts",
        summary="Contacts (external participants) of a workspace, most recently seen first, keyset-paginated",
        responses={200: ResponseSpec(ContactPage, description="OK"), **_ERRORS},
    )
    async def list_contacts(
        request: Request[Any, Any, Any],
        workspace_id: WorkspaceQuery,
        customer_id: Annotated[str | None, Parameter(max_length=64, description="only this customer's")] = None,
        email: Annotated[str | None, Parameter(max_length=320, description="only this address (any case)")] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> ContactPage:
        access = await authenticate(request)
        access.require(workspace_id, "workspace")
        after = _decode_contact_cursor(cursor)
        customer = None
        if customer_id is not None:
            customer = q.parse_uuid(customer_id)
            if customer is None:
                return ContactPage(items=[], next_cursor=None)
        flt = ContactFilter(workspace_id, customer, None if email is None else email.strip().lower())
        items, next_cursor = _contact_page(await _contacts(lookup.pool, flt, after, limit + 1), limit)
        return ContactPage(items=items, next_cursor=next_cursor)

    @get(
        "/customers",
        summary="Customers (companies) of a workspace by domain, keyset-paginated",
        responses={200: ResponseSpec(CustomerPage, description="OK"), **_ERRORS},
    )
    async def list_customers(
        request: Request[Any, Any, Any],
        workspace_id: WorkspaceQuery,
        domain: Annotated[str | None, Parameter(max_length=253, description="only this domain")] = None,
        search: Annotated[
            str | None, QueryParameter(name="q", min_length=1, max_length=200, description="in the name or the domain")
        ] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> CustomerPage:
        access = await authenticate(request)
        access.require(workspace_id, "workspace")
        after = None if cursor is None else _decode_domain(cursor)
        wanted = None if domain is None else domain.strip().lower()
        rows = await _customers(lookup.pool, workspace_id, wanted, search, after, limit + 1)
        page = rows[:limit]
        next_cursor = _encode_domain(page[-1]["domain"]) if len(rows) > limit else None
        return CustomerPage(items=[_summary(r) for r in page], next_cursor=next_cursor)

    @get(
        "/customers/{customer_id:str}",
        summary="One customer with its contacts and its messages (each with its link), first pages",
        responses={200: ResponseSpec(CustomerDetail, description="OK"), **_ERRORS},
    )
    async def get_customer(
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        contacts_limit: Limit = DEFAULT_PAGE,
        messages_limit: Limit = DEFAULT_PAGE,
    ) -> CustomerDetail:
        access = await authenticate(request)
        parsed = q.parse_uuid(customer_id)
        row = None if parsed is None else await _customer(lookup.pool, parsed)
        if row is None or not access.covers(row["workspace_id"]):
            raise not_found("customer")
        workspace_id = row["workspace_id"]
        contacts, contacts_next = _contact_page(
            await _contacts(lookup.pool, ContactFilter(workspace_id, row["id"]), None, contacts_limit + 1),
            contacts_limit,
        )
        messages, messages_next = await lookup.message_page(
            q.MessageFilter(workspaces=(workspace_id,), customer_id=row["id"]), None, messages_limit
        )
        return CustomerDetail(
            **msgspec.structs.asdict(_summary(row)),
            external_id=row["external_id"],
            attributes=row["attributes"] if isinstance(row["attributes"], dict) else {},
            created_at=row["created_at"],
            contacts=contacts,
            contacts_next_cursor=contacts_next,
            messages=messages,
            messages_next_cursor=messages_next,
        )

    return Router(
        "/v1",
        route_handlers=[list_contacts, list_customers, get_customer],
        cache_control=CACHE_CONTROL,
        security=[{"bearer": []}],
        tags=["contacts and customers"],
    )
