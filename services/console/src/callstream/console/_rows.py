"""The overview's and the integrations list's table rows as the templates print them, made without
I/O. A thousand rows rendered through the ``when``/``badge``/``provider`` macros took most of those
pages' time (bench/console: ~150 ms of a page's CPU at 1,000 integrations), so each row's cells are
made here once as ready markup (``__html__``, which Jinja prints as it is) and the templates print
them. The markup is the macros' own (``templates/macros.html``), so the pages look the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from markupsafe import escape  # Jinja's own, in C: html.escape was a third of a row's cost

from . import _views as v

__all__ = ["Html", "Row", "row"]

_MISSING = '<span class="muted">—</span>'
_PROVIDERS = {"fathom": "Fathom", "gong": "Gong"}


class Html(str):
    """Text that is markup already (escaped where it was made)."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def _when(value: Any, now: datetime) -> Html:
    """The ``when`` macro: a time relative to now, its UTC in the title; a dash for none. The time
    is parsed once and its UTC written without strftime (both were most of a row's cost)."""
    moment = v.as_datetime(value) if value else None
    if moment is None:
        return Html(_MISSING if not value else f'<time datetime="{escape(str(value))}" title=""></time>')
    u = moment.astimezone(UTC)
    utc = f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}:{u.minute:02d}:{u.second:02d} UTC"
    return Html(f'<time datetime="{escape(str(value))}" title="{utc}">{escape(v.relative(moment, now))}</time>')


@lru_cache(maxsize=256)  # a few statuses, a thousand rows
def _badge(status: v.Status) -> Html:
    title = f'title="{escape(status.hint)}"' if status.hint else ""
    return Html(f'<span class="badge {escape(status.tone)}" {title}>{escape(status.word)}</span>')


@lru_cache(maxsize=16)
def _provider(name: str) -> Html:
    return Html(f'<span class="provider {escape(name)}">{escape(_PROVIDERS.get(name, name))}</span>')


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    workspace_id: str
    provider: Html
    badge: Html
    last_sync: Html
    next_due: Html
    added: Html
    items_last_run: str


def row(integration: dict[str, Any], state: dict[str, Any] | None, status: v.Status, now: datetime) -> Row:
    s = state or {}
    items = s.get("items_synced_last_run")
    return Row(
        id=str(integration["id"]),
        workspace_id=str(integration["workspace_id"]),
        provider=_provider(str(integration["provider"])),
        badge=_badge(status),
        last_sync=_when(s.get("last_synced_at"), now),
        next_due=Html("—") if status.word == "disabled" else _when(s.get("next_due_at"), now),
        added=_when(integration.get("created_at"), now),
        items_last_run="—" if items is None else str(items),
    )
