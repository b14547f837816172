"""The overview's and the integrations list's tables as the templates print them, made without I/O.
A thousand rows rendered through the ``when``/``badge``/``provider`` macros took most of those pages'
time (bench/console: the console's CPU was what a page waited for at 1,000 integrations), so each
table body is made here at once as ready markup (``__html__``, which Jinja prints as it is). The
cells are the macros' own markup (``templates/macros.html``; a test compares them)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from markupsafe import escape as _markup_escape

from . import _views as v

__all__ = ["Html", "list_table", "overview_table"]

_MISSING = '<span class="muted">—</span>'
_PROVIDERS = {"fathom": "Fathom", "gong": "Gong"}
_UNSAFE = re.compile(r"[&<>\"']")


class Html(str):
    """Text that is markup already (escaped where it was made)."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def _esc(value: Any) -> str:
    """Escaped as Jinja escapes; ids and ISO times (nearly every value here) have nothing to escape."""
    text = str(value)
    return str(_markup_escape(text)) if _UNSAFE.search(text) else text


def _when(value: Any, now: datetime) -> str:
    """The ``when`` macro: a time relative to now, its UTC in the title; a dash for none. The time
    is parsed once and its UTC written without strftime (both were most of a row's cost)."""
    moment = v.as_datetime(value) if value else None
    if moment is None:
        return _MISSING if not value else f'<time datetime="{_esc(value)}" title=""></time>'
    u = moment.astimezone(UTC)
    utc = f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}:{u.minute:02d}:{u.second:02d} UTC"
    return f'<time datetime="{_esc(value)}" title="{utc}">{_esc(v.relative(moment, now))}</time>'


@lru_cache(maxsize=256)  # a few statuses, a thousand rows
def _badge(status: v.Status) -> str:
    title = f'title="{_esc(status.hint)}"' if status.hint else ""
    return f'<span class="badge {_esc(status.tone)}" {title}>{_esc(status.word)}</span>'


@lru_cache(maxsize=16)
def _provider(name: str) -> str:
    return f'<span class="provider {_esc(name)}">{_esc(_PROVIDERS.get(name, name))}</span>'


def _link(integration: dict[str, Any]) -> tuple[str, str]:
    key = _esc(integration["id"])
    return key, f'<a href="/integrations/{key}">{_provider(str(integration["provider"]))}</a>'


def overview_table(rows: Iterable[dict[str, Any]], now: datetime) -> Html:
    """The overview's ``<tbody>`` rows of integrations that need a person: provider, workspace,
    status, the problem in words, last sync, next due, id. ``rows`` are ``{"i": integration, "s":
    sync state or None, "status": Status, "problem": str}``."""
    out = []
    for r in rows:
        i, s, status = r["i"], r["s"] or {}, r["status"]
        key, link = _link(i)
        due = "—" if status.word == "disabled" else _when(s.get("next_due_at"), now)
        out.append(
            f"<tr><td>{link}</td><td>{_esc(i['workspace_id'])}</td><td>{_badge(status)}</td>"
            f'<td class="problem">{_esc(r.get("problem") or "")}</td>'
            f"<td>{_when(s.get('last_synced_at'), now)}</td><td>{due}</td>"
            f'<td><code class="id">{key}</code></td></tr>\n'
        )
    return Html("".join(out))


def list_table(rows: Iterable[dict[str, Any]], now: datetime) -> Html:
    """The integrations list's ``<tbody>`` rows: provider, workspace, status, last sync, added, id."""
    out = []
    for r in rows:
        i, s, status = r["i"], r["s"] or {}, r["status"]
        key, link = _link(i)
        out.append(
            f"<tr><td>{link}</td><td>{_esc(i['workspace_id'])}</td><td>{_badge(status)}</td>"
            f"<td>{_when(s.get('last_synced_at'), now)}</td><td>{_when(i.get('created_at'), now)}</td>"
            f'<td><code class="id">{key}</code></td></tr>\n'
        )
    return Html("".join(out))
