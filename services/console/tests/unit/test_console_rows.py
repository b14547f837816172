"""The overview's and the integrations list's cells (``_rows``, made in Python for speed: bench/console)
print exactly what the templates' macros print for the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2
import pytest

from callstream.console import _rows
from callstream.console import _views as v

TEMPLATES = Path(_rows.__file__).parent / "templates"
NOW = datetime.now(tz=UTC)


@pytest.fixture(scope="module")
def macros() -> object:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters.update(rel=v.relative, utc=v.absolute)
    return env.get_template("macros.html").module


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        (NOW - timedelta(days=3)).isoformat(),
        (NOW + timedelta(hours=2, minutes=7)).isoformat().replace("+00:00", "Z"),
        "2026-01-02T03:04:05.678+02:00",
        "not a time <b>",
    ],
)
def test_a_time_cell_is_the_when_macro(macros: object, value: str | None) -> None:
    assert _rows._when(value, NOW) == str(macros.when(value))  # type: ignore[attr-defined]


def test_badge_and_provider_cells_are_the_macros(macros: object) -> None:
    for status in (v.Status("failing", "bad", 'the last 3 run(s) "failed"'), v.Status("healthy", "ok")):
        assert _rows._badge(status) == str(macros.badge(status))  # type: ignore[attr-defined]
    for name in ("fathom", "gong", "other<x>"):
        assert _rows._provider(name) == str(macros.provider(name))  # type: ignore[attr-defined]


def test_a_disabled_integrations_row_has_no_next_due_and_values_are_escaped() -> None:
    integration = {"id": "i-1", "workspace_id": "a<b>", "provider": "gong", "created_at": NOW.isoformat()}
    state = {"last_synced_at": None, "next_due_at": NOW.isoformat(), "items_synced_last_run": 0}
    disabled = {"i": integration, "s": state, "status": v.Status("disabled", "off"), "problem": "x <y>"}
    row = _rows.overview_table([disabled], NOW)
    assert '<td class="problem">x &lt;y&gt;</td><td><span class="muted">—</span></td><td>—</td>' in row
    assert "<td>a&lt;b&gt;</td>" in row
    assert "a<b>" not in row
    listed = _rows.list_table([{"i": integration, "s": None, "status": v.Status("healthy", "ok")}], NOW)
    assert '<td><span class="muted">—</span></td><td><time' in listed
