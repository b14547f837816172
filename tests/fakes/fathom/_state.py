"""The fake Fathom's state: configuration, meetings, webhooks, OAuth grants, faults and the log."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from standardwebhooks import Webhook

from .._controls import Faults, RequestLog
from ._data import MeetingIndex, build_meeting, iso, shape


@dataclass(frozen=True)
class FathomConfig:
    seed: int = 1
    meetings: int = 200
    span_days: float = 365.0
    now: datetime | None = None  # the newest generated meeting is just before this (default: start time)
    page_size: int = 10
    api_keys: dict[str, str] = field(default_factory=lambda: {"fathom-test-key": "account-1"})
    default_account: str = "account-1"
    oauth_client_id: str = "fathom-client"
    oauth_client_secret: str = "fathom-client-secret"
    token_ttl_seconds: int = 3600
    requests_per_window: int = 60
    heavy_per_window: int = 30
    window_seconds: float = 60.0


@dataclass
class OAuthGrant:
    account: str
    expires_at: float  # monotonic


@dataclass
class Hook:
    id: str
    account: str
    url: str
    secret: str
    triggered_for: list[str]
    flags: set[str]
    created_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "secret": self.secret,
            "created_at": self.created_at,
            "include_transcript": "include_transcript" in self.flags,
            "include_summary": "include_summary" in self.flags,
            "include_action_items": "include_action_items" in self.flags,
            "include_crm_matches": "include_crm_matches" in self.flags,
            "triggered_for": self.triggered_for,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_id: str
    url: str
    message_id: str
    recording_id: int
    status: int | None
    error: str | None = None


class FathomState:
    def __init__(self, config: FathomConfig | None = None) -> None:
        self.config = config or FathomConfig()
        now = self.config.now or datetime.now(UTC)
        self.index = MeetingIndex.generate(
            self.config.seed, self.config.meetings, now=now, span=timedelta(days=self.config.span_days)
        )
        self.faults = Faults()
        self.log = RequestLog()
        self.webhooks: dict[str, Hook] = {}
        self.deliveries: list[Delivery] = []
        self.auth_codes: dict[str, str] = {}
        self.access_tokens: dict[str, OAuthGrant] = {}
        self.refresh_tokens: dict[str, str] = {}
        # Encoded meetings by (recording id, flags, content ready); only after ``warm`` (benchmarks),
        # so that serving costs the fake almost nothing and the measurement is of the client.
        self.encoded_cache: dict[tuple[int, frozenset[str], bool], msgspec.Raw] | None = None
        # Bytes the list endpoint sends in place of a meeting, whatever the flags (tests: a poison item).
        self.replaced: dict[int, msgspec.Raw] = {}
        # Recordings whose transcript and summary answer 404 while the meeting is still listed.
        self.recordings_gone: set[int] = set()
        # Called with the page number after each list page is built (tests: a change mid-crawl).
        self.after_page: Callable[[int], None] | None = None

    def encoded(self, pos: int, flags: set[str]) -> msgspec.Raw:
        """The meeting at ``pos`` as the list endpoint sends it for ``flags``."""
        rid = self.index.recording_ids[pos]
        if self.replaced and rid in self.replaced:
            return self.replaced[rid]
        ready = self.index.content_ready(rid)
        key = (rid, frozenset(flags), ready)
        cache = self.encoded_cache
        if cache is not None and key in cache:
            return cache[key]
        raw = msgspec.Raw(msgspec.json.encode(shape(build_meeting(self.index, pos), flags, content_ready=ready)))
        if cache is not None:
            cache[key] = raw
        return raw

    def edit_meeting(self, recording_id: int, **changes: Any) -> None:
        """A user edited a stored meeting at Fathom (``title``, ``default_summary``, ``action_items``,
        ...): it is served with ``changes`` from now on. Fathom has no ``updated_at`` and sends no
        webhook for an edit (fathom.md, addendum), so only a re-read finds it."""
        if self.index.position(recording_id) is None:
            raise KeyError(recording_id)
        self.index.edits[recording_id] = {**self.index.edits.get(recording_id, {}), **changes}
        if self.encoded_cache is not None:
            for key in [k for k in self.encoded_cache if k[0] == recording_id]:
                del self.encoded_cache[key]

    def delete_meetings(self, recording_ids: list[int]) -> None:
        """Deleted at Fathom (by a user, or by a retention policy): no longer listed, and its
        recordings answer 404. Fathom announces nothing (fathom.md, addendum)."""
        for rid in recording_ids:
            self.index.remove(rid)
            if self.encoded_cache is not None:
                for key in [k for k in self.encoded_cache if k[0] == rid]:
                    del self.encoded_cache[key]

    def warm(self, flags: set[str]) -> None:
        """Build every meeting once now, as a list request with ``flags`` will want it."""
        self.encoded_cache = {}
        for pos in range(len(self.index.recording_ids)):
            self.encoded(pos, flags)

    def meeting(self, recording_id: int) -> dict[str, Any]:
        pos = self.index.position(recording_id)
        if pos is None:
            raise KeyError(recording_id)
        return build_meeting(self.index, pos)

    # OAuth
    def issue_code(self, account: str) -> str:
        code = secrets.token_urlsafe(16)
        self.auth_codes[code] = account
        return code

    def issue_tokens(self, account: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        ttl = self.config.token_ttl_seconds
        self.access_tokens[access] = OAuthGrant(account, time.monotonic() + ttl)
        self.refresh_tokens[refresh] = account
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": ttl,
            "token_type": "Bearer",
            "scope": "public_api",
        }

    def expire_access_tokens(self) -> None:
        for grant in self.access_tokens.values():
            grant.expires_at = 0.0

    # Webhooks
    def add_webhook(self, account: str, url: str, triggered_for: list[str], flags: set[str]) -> Hook:
        hook = Hook(
            id=secrets.token_urlsafe(12),
            account=account,
            url=url,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            triggered_for=list(triggered_for),
            flags=flags,
            created_at=iso(datetime.now(UTC)),
        )
        self.webhooks[hook.id] = hook
        return hook

    async def add_meetings(self, count: int = 1, *, deliver: bool = True, content_delay: float = 0.0) -> list[int]:
        """New meetings, created now; with ``deliver`` each registered webhook gets a signed delivery
        (once the content is ready, as Fathom sends "new meeting content ready")."""
        ids = []
        for _ in range(count):
            rid = self.index.add_newest(datetime.now(UTC).replace(microsecond=0))
            if content_delay > 0:
                self.index.content_ready_at[rid] = time.monotonic() + content_delay
            ids.append(rid)
        if deliver and content_delay <= 0:
            for rid in ids:
                await self.deliver(rid)
        return ids

    async def deliver(self, recording_id: int, *, timeout: float = 15.0) -> list[Delivery]:
        meeting = self.meeting(recording_id)
        done = []
        async with httpx.AsyncClient(timeout=timeout) as client:
            for hook in list(self.webhooks.values()):
                body = msgspec.json.encode(shape(meeting, hook.flags, content_ready=True))
                message_id = "msg_" + secrets.token_urlsafe(18)
                now = datetime.now(UTC)
                signature = Webhook(hook.secret).sign(message_id, now, body.decode())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "Svix-Webhooks/1.81.0",
                    "webhook-id": message_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signature,
                }
                try:
                    response = await client.post(hook.url, content=body, headers=headers)
                    delivery = Delivery(hook.id, hook.url, message_id, recording_id, response.status_code)
                except httpx.HTTPError as exc:
                    delivery = Delivery(hook.id, hook.url, message_id, recording_id, None, type(exc).__name__)
                self.deliveries.append(delivery)
                done.append(delivery)
        return done
