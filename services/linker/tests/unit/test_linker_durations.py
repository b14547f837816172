"""A stored ``duration_seconds`` as a list item's whole seconds."""

from __future__ import annotations

import pytest

from callstream.linker._lookup import seconds_of


@pytest.mark.parametrize(
    ("stored", "answered"),
    [(2520, 2520), (1834.6, 1835), (2.5, 3), (3.5, 4), (0, 0), (None, None), ("60", None), (True, None), (-5, None),
     (float("nan"), None), (float("inf"), None), ({"s": 1}, None)],
)  # fmt: skip
def test_seconds_of(stored: object, answered: int | None) -> None:
    assert seconds_of(stored) == answered
