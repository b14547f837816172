from litestar import get
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from callstream.runtime import create_app


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
