"""When the consumer writes batches concurrently: only while it is behind."""

from __future__ import annotations

import pytest

from callstream.normalizer._consumer import concurrent_stores
from callstream.normalizer._settings import Settings


@pytest.mark.parametrize(
    ("fetched", "expected"),
    [(100, 3), (1, 1), (99, 1)],
    ids=["a full batch: behind, three at once", "one call: caught up", "one short of full: caught up"],
)
def test_batches_are_written_concurrently_only_while_behind(fetched, expected):
    settings = Settings.model_construct(batch_size=100, store_concurrency=3)
    assert concurrent_stores(fetched, settings) == expected


def test_a_concurrency_of_one_stays_one():
    settings = Settings.model_construct(batch_size=10, store_concurrency=1)
    assert concurrent_stores(10, settings) == 1
