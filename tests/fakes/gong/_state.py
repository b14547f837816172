"""The fake Gong's state: configuration, calls, OAuth grants, faults and the log."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .._controls import Faults, RequestLog
from ._data import CallIndex, Selector, build_call, build_transcript


@dataclass(frozen=True)
class GongConfig:
    seed: int = 1
    calls: int = 300
    span_days: float = 365.0
    now: datetime | None = None  # the newest generated call starts before this (default: start time)
    page_size: int = 100
    workspace_id: str = "440912837465019283"
    tenant: str = "us-48213"  # per-tenant hosts: us-48213.app.gong.io / us-48213.api.gong.io
    access_keys: dict[str, str] = field(default_factory=lambda: {"gong-access-key": "gong-access-secret"})
    company: str = "company-1"
    oauth_client_id: str = "gong-client"
    oauth_client_secret: str = "gong-client-secret"
    token_ttl_seconds: int = 86_400
    requests_per_second: int = 3
    requests_per_day: int = 10_000
    cursor_ttl_seconds: float = 600.0
    api_base_url: str | None = None  # what the token endpoint returns (default: the URL the fake is reached at)
    private_every: int = 0  # every Nth generated call is private (``metaData.isPrivate``); 0: none

    @property
    def app_host(self) -> str:
        return f"{self.tenant}.app.gong.io"


@dataclass
class Grant:
    company: str
    expires_at: float  # monotonic


class GongState:
    def __init__(self, config: GongConfig | None = None) -> None:
        self.config = config or GongConfig()
        now = self.config.now or datetime.now(UTC)
        self.index = CallIndex.generate(
            self.config.seed,
            self.config.calls,
            now=now,
            span=timedelta(days=self.config.span_days),
            workspace_id=self.config.workspace_id,
            private_every=self.config.private_every,
        )
        self.faults = Faults()
        self.log = RequestLog()
        self.auth_codes: dict[str, str] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, str] = {}
        # Encoded calls and transcripts; only after ``warm`` (benchmarks), so that serving costs the
        # fake almost nothing and the measurement is of the client.
        self.call_cache: dict[tuple[str, Selector, int, bool], msgspec.Raw] | None = None
        self.transcript_cache: dict[str, msgspec.Raw] | None = None
        # Bytes sent in place of a call or of its transcript entry (tests: a poison item).
        self.replaced_calls: dict[str, msgspec.Raw] = {}
        self.replaced_transcripts: dict[str, msgspec.Raw] = {}
        # Called with the page number after each page of calls by date (tests: a change mid-crawl).
        self.after_page: Callable[[int], None] | None = None

    def encoded_call(self, pos: int, selector: Selector) -> msgspec.Raw:
        call_id = self.index.ids[pos]
        if self.replaced_calls and call_id in self.replaced_calls:
            return self.replaced_calls[call_id]
        key = (call_id, selector, self.index.crm_version.get(call_id, 0), call_id in self.index.private)
        if self.call_cache is not None and key in self.call_cache:
            return self.call_cache[key]
        raw = msgspec.Raw(msgspec.json.encode(build_call(self.index, pos, selector, host=self.config.app_host)))
        if self.call_cache is not None:
            self.call_cache[key] = raw
        return raw

    def encoded_transcript(self, pos: int) -> msgspec.Raw:
        call_id = self.index.ids[pos]
        if self.replaced_transcripts and call_id in self.replaced_transcripts:
            return self.replaced_transcripts[call_id]
        if self.transcript_cache is not None and call_id in self.transcript_cache:
            return self.transcript_cache[call_id]
        raw = msgspec.Raw(msgspec.json.encode(build_transcript(self.index, pos)))
        if self.transcript_cache is not None:
            self.transcript_cache[call_id] = raw
        return raw

    def warm(self, selector: Selector) -> None:
        """Build every call (as ``selector`` asks for it) and every transcript once now."""
        self.call_cache, self.transcript_cache = {}, {}
        for pos in range(len(self.index.ids)):
            self.encoded_call(pos, selector)
            self.encoded_transcript(pos)

    def add_calls(
        self,
        count: int = 1,
        *,
        transcript_delay: float = 0.0,
        started: datetime | None = None,
        private: bool = False,
    ) -> list[str]:
        """New calls that started now (or at ``started``); their transcripts appear ``transcript_delay``
        seconds later, as Gong's processing does. ``private`` calls carry ``isPrivate: true``."""
        ids = []
        for _ in range(count):
            call_id = self.index.add_newest((started or datetime.now(UTC)).replace(microsecond=0))
            if transcript_delay > 0:
                self.index.transcript_ready_at[call_id] = time.monotonic() + transcript_delay
            if private:
                self.index.private.add(call_id)
            ids.append(call_id)
        return ids

    def set_private(self, call_ids: list[str], private: bool = True) -> None:
        """A user marked calls private (or shared them again)."""
        for call_id in call_ids:
            if private:
                self.index.private.add(call_id)
            else:
                self.index.private.discard(call_id)

    def delete_calls(self, call_ids: list[str]) -> None:
        """Deleted at Gong: no longer listed, by window or by id."""
        for call_id in call_ids:
            self.index.remove(call_id)

    def delay_transcripts(self, call_ids: list[str], seconds: float) -> None:
        for call_id in call_ids:
            self.index.transcript_ready_at[call_id] = time.monotonic() + seconds

    def change_crm(self, call_id: str) -> None:
        """Gong re-associated the call in the CRM: from now on its ``Now`` context names another
        HubSpot account (another company and domain) and its deal moves a stage on; the
        ``TimeOfCall`` context keeps the account it had."""
        self.index.crm_version[call_id] = self.index.crm_version.get(call_id, 0) + 1

    def issue_code(self, company: str | None = None) -> str:
        code = secrets.token_urlsafe(16)
        self.auth_codes[code] = company or self.config.company
        return code

    def issue_tokens(self, company: str, base_url: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        ttl = self.config.token_ttl_seconds
        self.access_tokens[access] = Grant(company, time.monotonic() + ttl)
        self.refresh_tokens[refresh] = company
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": ttl,
            "token_type": "bearer",
            "scope": "api:calls:read:basic api:calls:read:extensive api:calls:read:transcript",
            "api_base_url_for_customer": self.config.api_base_url or base_url,
        }

    def expire_access_tokens(self) -> None:
        for grant in self.access_tokens.values():
            grant.expires_at = 0.0
