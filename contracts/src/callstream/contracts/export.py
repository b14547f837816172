"""Export JSON Schema for every wire message, and an AsyncAPI 3 document, to contracts/schemas/.

    python -m callstream.contracts.export [--check] [DIR]

``--check`` writes nothing and exits 1 when the files on disk differ from what would be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from . import _data_points as dp
from . import _messages as m
from ._subjects import STREAMS

# (message type, subjects it travels on, publisher, description)
CHANNELS: tuple[tuple[type[msgspec.Struct], tuple[str, ...], str, str], ...] = (
    (
        m.RawCall,
        ("calls.raw.fathom.{integration_id}", "calls.raw.gong.{integration_id}"),
        "ingest-gateway",
        "A provider object, byte for byte",
    ),
    (m.SyncRequested, ("sync.requested.fathom", "sync.requested.gong"), "scheduler", "A pull run to do"),
    (
        m.SyncProgress,
        ("sync.events.fathom", "sync.events.gong"),
        "ingest-gateway",
        "A pull run's page is done",
    ),
    (m.SyncFinished, ("sync.events.fathom", "sync.events.gong"), "ingest-gateway", "A pull run ended"),
    (
        m.SyncStored,
        ("sync.events.stored.fathom", "sync.events.stored.gong"),
        "normalizer",
        "What a batch of a pull run's calls became: created, updated, unchanged",
    ),
    (
        m.MessageUpserted,
        ("messages.upserted.fathom", "messages.upserted.gong"),
        "normalizer",
        "A message changed",
    ),
    (
        m.MessageDeleted,
        ("messages.deleted.fathom", "messages.deleted.gong"),
        "normalizer",
        "A message became a tombstone",
    ),
    (
        m.CallsListed,
        ("calls.listed.fathom.{integration_id}", "calls.listed.gong.{integration_id}"),
        "ingest-gateway",
        "Every call a reconciling run listed in its window",
    ),
    (
        m.ErasureRequested,
        ("erasures.requested",),
        "ingest-gateway",
        "Erase everything of an integration or a workspace",
    ),
    (
        m.ErasureFinished,
        ("erasures.finished.gateway", "erasures.finished.normalizer", "erasures.finished.scheduler"),
        "each service",
        "A service's part of an erasure is done, with counts",
    ),
    (m.FeatureLinked, ("features.linked",), "internal services", "A feature names a message"),
    (
        m.FeatureUnlinked,
        ("features.unlinked",),
        "linker (HTTP DELETE)",
        "A feature no longer names a message",
    ),
    (dp.DataPointRecorded, ("datapoints.recorded",), "linker", "A value extracted from a message, with its evidence"),
    (m.DeadLetter, ("dlq.normalizer",), "any consumer", "What a consumer could never process"),
)
EXTRA_SCHEMAS: tuple[type[msgspec.Struct], ...] = (m.GongCallBundle,)

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "schemas"


def _dumps(doc: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def render() -> dict[str, bytes]:
    """The exported files by name; pure, so the staleness test can compare without writing."""
    files: dict[str, bytes] = {}
    types = [c[0] for c in CHANNELS] + list(EXTRA_SCHEMAS)
    for t in types:
        files[f"{t.__name__}.v1.json"] = _dumps(msgspec.json.schema(t))
    _, defs = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for t, subjects, publisher, description in CHANNELS:
        name = t.__name__
        messages[name] = {
            "name": name,
            "title": name,
            "summary": description,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "deterministic from the content identity",
                    },
                    "traceparent": {"type": "string", "description": "W3C trace context"},
                    "tracestate": {"type": "string", "description": "W3C trace state, when the trace has one"},
                },
            },
        }
        for subject in subjects:
            key = subject.replace(".", "_").replace("{", "").replace("}", "")
            channel = channels.setdefault(
                key,
                {"address": subject, "messages": {}, "description": _stream_of(subject)},
            )
            if "{integration_id}" in subject:  # an AsyncAPI parameter: the subject's last token
                channel["parameters"] = {"integration_id": {"description": "the integration's id"}}
            channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
            operations[f"publish_{name}_{key}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{publisher} publishes {name}",
                "messages": [{"$ref": f"#/channels/{key}/messages/{name}"}],
            }
    asyncapi = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "callstream events",
            "version": "1.0.0",
            "description": "Subjects and messages on NATS JetStream (generated by callstream.contracts.export).",
        },
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": dict(sorted(defs.items())), "messages": messages},
    }
    files["asyncapi.json"] = _dumps(asyncapi)
    return files


def _stream_of(subject: str) -> str:
    for stream in STREAMS:
        for pattern in stream.subjects:
            if pattern == subject or (pattern.endswith(">") and subject.startswith(pattern[:-1])):
                return f"stream {stream.name}: {stream.description}"
    return ""


def stale_files(directory: Path = DEFAULT_DIR) -> list[str]:
    wanted = render()
    stale = [n for n, body in wanted.items() if not (directory / n).is_file() or (directory / n).read_bytes() != body]
    extra = [p.name for p in directory.glob("*.json") if p.name not in wanted] if directory.is_dir() else []
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callstream.contracts.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the export on disk is stale")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        if stale:
            print("stale contract exports: " + ", ".join(stale) + " (run python -m callstream.contracts.export)")
            return 1
        return 0
    args.directory.mkdir(parents=True, exist_ok=True)
    wanted = render()
    for p in args.directory.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    for name, body in wanted.items():
        (args.directory / name).write_bytes(body)
    print(f"wrote {len(wanted)} files to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
