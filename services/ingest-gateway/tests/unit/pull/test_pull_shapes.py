"""Pure parts of the pull workers: bytes kept, windows by mode, limiter arithmetic."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

import msgspec

from callstream.contracts import GongCallBundle, SyncRequested, TimeWindow
from callstream.gateway.pull._fathom import fathom_api_root
from callstream.gateway.pull._gong import gong_api_root
from callstream.gateway.pull._limits import window_limiter
from callstream.gateway.pull._shapes import gong_bundle, gong_call_facts, gong_call_id, private_call, with_fields
from callstream.gateway.pull._windows import latest_bands, run_window

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_with_fields_replaces_a_null_and_keeps_every_other_value_byte_for_byte() -> None:
    meeting = msgspec.Raw(b'{"recording_id":7,"title":"A  b","transcript":null,"n":1.50}')
    out = with_fields(meeting, {"transcript": msgspec.Raw(b'[{"text":"hi"}]')})
    assert out == b'{"recording_id":7,"title":"A  b","transcript":[{"text":"hi"}],"n":1.50}'


def test_a_gong_bundle_carries_both_parts_as_sent() -> None:
    call = msgspec.Raw(b'{"metaData":{"id":"5520183947712650031","started":"2026-01-14T16:02:11-05:00"}}')
    bundle = msgspec.json.decode(gong_bundle(call, None), type=GongCallBundle)
    assert bytes(bundle.call) == bytes(call)
    assert not bundle.has_transcript
    assert gong_call_id(call) == ("5520183947712650031", "2026-01-14T16:02:11-05:00")


def test_a_private_call_keeps_its_metadata_byte_for_byte_and_loses_what_was_said() -> None:
    call = msgspec.Raw(
        b'{"metaData":{"id":"42","isPrivate":true,"title":"A  b"},"content":{"brief":"secret"},'
        b'"parties":[{"id":"1"}],"collaboration":{"publicComments":[{"comment":"quote"}]},"interaction":{"x":1.50}}'
    )
    assert gong_call_facts(call).is_private is True
    assert (
        private_call(call)
        == b'{"metaData":{"id":"42","isPrivate":true,"title":"A  b"},"parties":[{"id":"1"}],"interaction":{"x":1.50}}'
    )
    shared = msgspec.Raw(b'{"metaData":{"id":"43","isPrivate":false}}')
    assert gong_call_facts(shared).is_private is False
    assert gong_call_facts(msgspec.Raw(b'{"metaData":{"id":"44"}}')).is_private is None  # absent: not private


def _req(mode: str, window: TimeWindow | None = None) -> SyncRequested:
    return SyncRequested(
        run_id="r",
        integration_id="i",
        workspace_id="w",
        provider="gong",
        mode=mode,  # type: ignore[arg-type]
        window=window or TimeWindow(),
    )


def test_run_windows_by_mode() -> None:
    start = NOW - timedelta(days=3)
    assert run_window(_req("incremental", TimeWindow(start=start)), NOW) == (start, NOW)
    assert run_window(_req("backfill"), NOW) == (None, NOW)
    assert run_window(_req("range", TimeWindow(start=start, end=NOW - timedelta(days=1))), NOW) == (
        start,
        NOW - timedelta(days=1),
    )
    assert run_window(_req("latest"), NOW) == (None, None)


def test_latest_bands_are_disjoint_and_go_back_to_the_oldest() -> None:
    oldest = NOW - timedelta(days=400)
    bands = latest_bands(NOW, oldest)
    assert bands[0] == (NOW - timedelta(days=1), NOW)
    assert all(a[0] == b[1] for a, b in itertools.pairwise(bands))
    assert bands[-1][0] == oldest


def test_provider_roots() -> None:
    assert fathom_api_root(None) == "https://api.fathom.ai/external/v1"
    assert fathom_api_root("http://127.0.0.1:9/") == "http://127.0.0.1:9/external/v1"
    assert gong_api_root("https://us-48213.api.gong.io/v2/") == "https://us-48213.api.gong.io"


async def test_a_window_limiter_never_lets_more_than_the_limit_into_a_window() -> None:
    limiter = window_limiter(5, 0.5, 0.9)  # 5 per half second
    times = []
    started = time.monotonic()
    while time.monotonic() - started < 1.6:
        await limiter.acquire()
        times.append(time.monotonic())
    worst = max(sum(1 for t in times if s <= t < s + 0.5) for s in times)
    assert worst <= 5
    assert len(times) >= 8  # and it does let requests through at about the limit
    await asyncio.sleep(0)


def test_runs_of_one_provider_account_share_one_set_of_limiters() -> None:
    from callstream.gateway.pull import LimiterRegistry, PullSettings
    from callstream.gateway.pull._limits import account_key

    registry = LimiterRegistry(PullSettings())
    first = registry.gong(account_key("gong", "https://us-1.api.gong.io", "key-1"))
    again = registry.gong(account_key("gong", "https://us-1.api.gong.io", "key-1"))
    other = registry.gong(account_key("gong", "https://us-1.api.gong.io", "key-2"))
    assert first is again
    assert first is not other
    assert "key-1" not in account_key("gong", "https://us-1.api.gong.io", "key-1")  # no secret in the key
