import gc
import threading
from typing import Any

from litestar import get
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from callstream.runtime import RequestMetrics, create_app


@get("/items/{item_id:str}", sync_to_thread=False)
def item(item_id: FromPath[str]) -> dict[str, str]:
    return {"id": item_id}


def _count(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "callstream_http_requests_total", {"service": "obs", "method": "GET", "route": route, "status": status}
    )
    return value or 0.0


def test_requests_are_counted_by_route_template_and_carry_a_request_id() -> None:
    app = create_app(service="obs", title="obs", route_handlers=[item], checks={})
    before = _count("/items/{item_id}", "200")
    with TestClient(app) as client:
        first = client.get("/items/a")
        second = client.get("/items/b", headers={"x-request-id": "caller-chosen"})
        traced = client.get(
            "/items/c", headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        )
        missing = client.get("/nowhere")
        client.get("/health/live")
    assert first.status_code == 200
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert second.headers["x-request-id"] == "caller-chosen"
    assert traced.headers["x-request-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert _count("/items/{item_id}", "200") - before == 3  # one series for all ids, not one per id


def _series(service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the request series for one service label, without that label (and without
    the ``_created`` timestamps, which differ by when each child was made)."""
    found = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            named = sample.name.startswith("callstream_http_request") and not sample.name.endswith("_created")
            if named and sample.labels.get("service") == service:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "service"))
                found[(sample.name, labels)] = sample.value
    return found


def test_deferred_observations_equal_recorded_ones() -> None:
    """``defer`` reaches into prometheus_client's histogram; this pins it to what ``observe`` does,
    bounds included (a value equal to a bucket's bound belongs to that bucket)."""
    recorded, deferred = RequestMetrics("obs-recorded"), RequestMetrics("obs-deferred")
    seconds = [0.0, 0.00003, 0.001, 0.0010001, 0.0025, 0.004, 0.01, 0.3, 5.0, 7.5, 0.00002]
    for status, value in zip([200, 200, 304, 200, 200, 404, 200, 200, 200, 500, 200], seconds, strict=True):
        recorded.record("GET", "/v1/links", status, value)
        deferred.defer("GET", "/v1/links", status, value)
    expected = _series("obs-recorded")
    assert expected  # the comparison below is not between two empty sets
    assert _series("obs-deferred") == expected
    assert _series("obs-deferred") == expected  # a second collection adds nothing twice

    deferred.defer("GET", "/v1/links", 200, 0.0002)
    count = REGISTRY.get_sample_value(
        "callstream_http_requests_total",
        {"service": "obs-deferred", "method": "GET", "route": "/v1/links", "status": "200"},
    )
    assert count == 9  # any reader of the registry sees the tally, with no flush by hand


def test_a_deferred_tally_outlives_the_metrics_object_that_held_it() -> None:
    """An app dropped between a request and the next scrape (a rebuilt app, a test) must not take
    its uncounted requests with it."""
    metrics = RequestMetrics("obs-dropped")
    metrics.defer("GET", "/v1/links", 200, 0.0001)
    del metrics
    gc.collect()
    count = REGISTRY.get_sample_value(
        "callstream_http_requests_total",
        {"service": "obs-dropped", "method": "GET", "route": "/v1/links", "status": "200"},
    )
    assert count == 1


def test_a_reader_during_a_flush_waits_for_its_tallies() -> None:
    """Two readers at once (a scrape and a test thread): the second must not read the series
    between the first taking the tallies and adding them."""
    metrics = RequestMetrics("obs-two-readers")
    for _ in range(5):
        metrics.defer("GET", "/v1/links", 200, 0.0001)
    inside, go = threading.Event(), threading.Event()
    pair = metrics._pair

    def paused_pair(key: tuple[str, str, int]) -> Any:
        inside.set()
        go.wait(5)
        return pair(key)

    metrics._pair = paused_pair  # type: ignore[method-assign]
    first = threading.Thread(target=metrics.flush)
    first.start()
    assert inside.wait(5)
    metrics._pair = pair  # type: ignore[method-assign]
    seen: list[float | None] = []
    labels = {"service": "obs-two-readers", "method": "GET", "route": "/v1/links", "status": "200"}
    second = threading.Thread(
        target=lambda: seen.append(REGISTRY.get_sample_value("callstream_http_requests_total", labels))
    )
    second.start()
    second.join(0.5)  # a reader that does not wait would be done by now, with a count short
    go.set()
    first.join(5)
    second.join(5)
    assert seen == [5]
