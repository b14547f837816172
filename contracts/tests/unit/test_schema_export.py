import json

from callstream.contracts import export


def test_the_exported_schemas_are_current() -> None:
    assert export.stale_files() == [], "run ./dev export and commit contracts/schemas/"


def test_the_asyncapi_document_names_every_subject_and_resolves_its_refs() -> None:
    doc = json.loads(export.render()["asyncapi.json"])
    assert doc["asyncapi"] == "3.0.0"
    addresses = {ch["address"] for ch in doc["channels"].values()}
    assert {
        "calls.raw.fathom.{integration_id}",
        "calls.raw.gong.{integration_id}",
        "messages.upserted.gong",
        "features.linked",
    } <= addresses
    schemas = doc["components"]["schemas"]
    for message in doc["components"]["messages"].values():
        assert message["payload"]["$ref"].rsplit("/", 1)[1] in schemas
    for ref in _refs(doc):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # a KeyError is a dangling reference


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_a_changed_export_is_detected(tmp_path) -> None:
    for name, body in export.render().items():
        (tmp_path / name).write_bytes(body)
    assert export.stale_files(tmp_path) == []
    (tmp_path / "RawCall.v1.json").write_text("{}")
    (tmp_path / "Removed.v1.json").write_text("{}")
    assert export.stale_files(tmp_path) == ["RawCall.v1.json", "Removed.v1.json"]
