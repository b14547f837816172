"""The normalizer's extra subcommands: ``dlq list|show|redrive``, ``replay --since``, ``rederive`` and ``retention``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import msgspec

from callstream.runtime import Command, connect_nats

from . import _dlq
from ._rederive import run_rederive
from ._replay import run_replay
from ._retention import run_retention
from ._settings import Settings


def _dlq_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dlq_command", required=True)
    sub.add_parser("list", help="one JSON line per entry: DLQ sequence, origin, error, delivery count")
    show = sub.add_parser("show", help="one entry in full")
    show.add_argument("seq", type=int, help="the DLQ sequence (from list)")
    show.add_argument("--data", action="store_true", help="also print the original bytes (may hold transcripts)")
    redrive = sub.add_parser("redrive", help="publish entries to their original subject again and drop them")
    redrive.add_argument("seq", type=int, nargs="*", help="DLQ sequences (from list)")
    redrive.add_argument("--all", action="store_true", help="every entry")


async def _dlq_command(settings: Settings, args: argparse.Namespace) -> int:
    nc = await connect_nats(settings, "normalizer-cli")
    try:
        js = nc.jetstream()
        found = await _dlq.entries(js)
        if args.dlq_command == "list":
            for line in _dlq.summary_lines(found):
                print(line)
            return 0
        by_seq = dict(found)
        if args.dlq_command == "show":
            letter = by_seq.get(args.seq)
            if letter is None:
                print(f"no DLQ entry {args.seq}", file=sys.stderr)
                return 1
            shown = msgspec.structs.asdict(letter)
            shown["data"] = letter.data.decode("utf-8", "replace") if args.data else f"<{len(letter.data)} bytes>"
            print(msgspec.json.format(msgspec.json.encode({"dlq_seq": args.seq, **shown}), indent=2).decode())
            return 0
        wanted = sorted(by_seq) if args.all else args.seq
        if not wanted:
            print("name DLQ sequences, or --all", file=sys.stderr)
            return 2
        missing = [s for s in wanted if s not in by_seq]
        # An entry recorded without its bytes (too large even for a dead letter) cannot be sent again.
        hollow = [s for s in wanted if s in by_seq and not by_seq[s].data]
        for seq in wanted:
            if seq in by_seq and seq not in hollow:
                await _dlq.redrive(js, seq, by_seq[seq])
                print(msgspec.json.encode({"redriven": seq, "subject": by_seq[seq].subject}).decode())
        for seq in missing:
            print(f"no DLQ entry {seq}", file=sys.stderr)
        for seq in hollow:
            print(f"DLQ entry {seq} was recorded without its bytes: nothing to redrive", file=sys.stderr)
        return 1 if missing or hollow else 0
    finally:
        await nc.close()


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", required=True, help="a CALLS_RAW stream sequence, or an ISO 8601 time")


async def _replay_command(settings: Settings, args: argparse.Namespace) -> int:
    report = await run_replay(settings, args.since)
    print(msgspec.json.encode(report).decode())
    return 0


async def _rederive_command(settings: Settings, args: argparse.Namespace) -> int:
    report = await run_rederive(settings)
    print(msgspec.json.encode(report).decode())
    return 1 if report["busy"] else 0


async def _retention_command(settings: Settings, args: argparse.Namespace) -> int:
    print(msgspec.json.encode(await run_retention(settings, datetime.now(UTC))).decode())
    return 0


COMMANDS = {
    "dlq": Command(
        help="inspect and redrive dead letters of dlq.normalizer", run=_dlq_command, arguments=_dlq_arguments
    ),
    "replay": Command(
        help="re-derive messages from CALLS_RAW (idempotent; events only for real changes)",
        run=_replay_command,
        arguments=_replay_arguments,
    ),
    "rederive": Command(
        help="bring stored messages of an older metadata shape to the current one, from the raw data they keep"
        " (idempotent; one MessageUpserted 'updated' per message changed)",
        run=_rederive_command,
    ),
    "retention": Command(
        help="make the messages older than their workspace's retention tombstones, now (idempotent;"
        " one MessageDeleted 'retention' each)",
        run=_retention_command,
    ),
}
