"""The fakes' building blocks: windows, cursors, fault knobs, data kept small and deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes._controls import Faults, FixedWindow, decode_cursor, encode_cursor
from tests.fakes.fathom._data import MeetingIndex, build_meeting
from tests.fakes.gong._data import CallIndex, Selector, build_call

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_fixed_window_counts_until_it_closes() -> None:
    clock = [0.0]
    window = FixedWindow(3, 1.0, clock=lambda: clock[0])
    assert [window.take() for _ in range(4)] == [True, True, True, False]
    assert window.reset_in() == pytest.approx(1.0)
    clock[0] = 1.0
    assert window.take()


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    assert encode_cursor({"page_num": 2}) == "eyJwYWdlX251bSI6Mn0="  # the docs' own example cursor
    assert decode_cursor("eyJwYWdlX251bSI6Mn0=") == {"page_num": 2}
    assert decode_cursor("not base64!") is None


def test_faults_take_what_was_set_and_refuse_unknown_knobs() -> None:
    faults = Faults()
    faults.update({"fail_next": 2, "fail_status": 502})
    assert [faults.take_failure() for _ in range(3)] == [502, 502, None]
    with pytest.raises(ValueError):
        faults.update({"nonsense": 1})


def test_fathom_meetings_are_newest_first_and_the_same_for_the_same_seed() -> None:
    a = MeetingIndex.generate(4, 50, now=NOW, span=timedelta(days=10))
    b = MeetingIndex.generate(4, 50, now=NOW, span=timedelta(days=10))
    assert a.created == sorted(a.created, reverse=True)
    assert build_meeting(a, 7) == build_meeting(b, 7)
    assert len(set(a.recording_ids)) == 50
    window = a.window(a.created[20], a.created[9])  # exclusive bounds
    assert list(window) == list(range(10, 20))


def test_gong_calls_keep_string_ids_and_honour_the_content_selector() -> None:
    index = CallIndex.generate(2, 30, now=NOW, span=timedelta(days=3), workspace_id="w1")
    bare = build_call(index, 0, Selector(), host="us-1.app.gong.io")
    assert set(bare) == {"metaData"}
    assert isinstance(bare["metaData"]["id"], str)
    assert len(bare["metaData"]["id"]) == 19
    full = build_call(
        index, 0, Selector(context="Extended", timings=("Now", "TimeOfCall"), parties=True), host="us-1.app.gong.io"
    )
    objects = full["context"][0]["objects"]
    assert {o["timing"] for o in objects} == {"Now", "TimeOfCall"}
    assert all("fields" in o for o in objects)
    index.crm_version[index.ids[0]] = 2
    changed = build_call(index, 0, Selector(context="Extended"), host="us-1.app.gong.io")
    stage = next(
        f["value"]
        for o in changed["context"][0]["objects"]
        if o["objectType"] == "Opportunity"
        for f in o["fields"]
        if f["name"] == "dealstage"
    )
    assert stage in ("contractsent", "closedwon")


def test_gong_private_calls_are_marked_and_content_quotes_the_call() -> None:
    index = CallIndex.generate(2, 12, now=NOW, span=timedelta(days=3), workspace_id="w1", private_every=4)
    assert index.private == {index.ids[3], index.ids[7], index.ids[11]}
    flags = [build_call(index, p, Selector(), host="h")["metaData"]["isPrivate"] for p in range(12)]
    assert flags == [p % 4 == 3 for p in range(12)]
    content = build_call(index, 0, Selector(content=True), host="h")["content"]
    assert content["pointsOfInterest"]["actionItems"][0]["snippet"]
