"""Property tests: any well-shaped meeting or call maps; anything malformed is UnmappableError
(which the consumer dead-letters) and never any other exception."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callstream.normalizer._mapped import UnmappableError
from callstream.normalizer._mapping import map_raw_call

sys.path.insert(0, str(Path(__file__).parents[1]))
from normalizer_strategies import envelope, json_values, malformed_events, well_shaped_events

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(well_shaped_events())
def test_well_shaped_objects_map(event):
    source, external_id, data = event
    mapped = map_raw_call(data)
    assert (mapped.source, mapped.external_id) == (source, external_id)
    assert "\x00" not in mapped.content
    metadata = msgspec.json.decode(mapped.metadata_json)
    assert metadata["has_transcript"] == bool(mapped.content)
    assert len(mapped.content_hash) == 40
    if mapped.customer is not None:
        assert "." in mapped.customer.domain


@PROFILE
@given(malformed_events())
def test_malformed_events_are_unmappable(data):
    with pytest.raises(UnmappableError):
        map_raw_call(data)


anything = st.one_of(
    st.binary(max_size=200),
    json_values.map(msgspec.json.encode),
    st.tuples(st.sampled_from(["fathom", "gong"]), json_values).map(
        lambda sv: envelope(sv[0], "1", msgspec.json.encode(sv[1]))
    ),
    st.tuples(st.sampled_from(["recording_id", "call", "metaData"]), json_values).map(
        lambda kv: envelope("fathom" if kv[0] == "recording_id" else "gong", "1", msgspec.json.encode({kv[0]: kv[1]}))
    ),
)


@PROFILE
@given(anything)
def test_arbitrary_input_never_raises_anything_else(data):
    with contextlib.suppress(UnmappableError):
        map_raw_call(data)
