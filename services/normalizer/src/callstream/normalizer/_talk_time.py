"""Who spoke how long, from the transcript timings both providers send. Pure: no I/O.

The metadata key ``talk_time`` (null when the transcript has no timings):

``{"total_seconds", "participants": [{"name", "email", "affiliation", "seconds", "share"}],
"internal_share", "external_share", "unknown_share",
"longest_monologue": {"name", "email", "affiliation", "seconds", "start"} | null}``

Shares are of the total talk time (0..1, four decimals); participants are ordered by seconds,
most first. A monologue is a run of consecutive speech by one speaker (Gong splits a speaker's turn
by topic, Fathom by sentence, so runs are merged); its length is from its first start to its last
end, pauses within it included.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

AFFILIATIONS = ("internal", "external", "unknown")


@dataclass(frozen=True, slots=True)
class Speaker:
    name: str | None
    email: str | None
    affiliation: str  # 'internal', 'external' or 'unknown'


class Segment(NamedTuple):  # a tuple: one per transcript sentence, so cheap to make
    speaker: str  # a key into the speakers map
    start: float  # seconds from the start of the recording
    end: float


_IN_TIME_ORDER = itemgetter(1, 2)  # a segment's (start, end)


def _rounded(value: float, places: int) -> float:
    return round(value, places) + 0.0  # + 0.0: never -0.0


def _who(speaker: Speaker) -> dict[str, Any]:
    return {"name": speaker.name, "email": speaker.email, "affiliation": speaker.affiliation}


def talk_time(
    segments: Iterable[tuple[str, float, float]], speakers: dict[str, Speaker], *, in_order: bool = False
) -> dict[str, Any] | None:
    """``segments``: :class:`Segment` or plain ``(speaker, start, end)`` tuples (cheaper to make, one
    per transcript sentence); ``in_order`` when the caller already has them by start."""
    unknown = Speaker(None, None, "unknown")
    # One pass in time order sums each speaker's speech and finds the longest monologue: an hour's
    # transcript passes here on every delivery (the normalizer's drain rate depends on it).
    seconds: dict[str, float] = {}
    longest: tuple[float, float, str] | None = None  # (length, start, speaker)
    run_speaker: str | None = None
    run_start = run_end = 0.0
    for who, start, end in segments if in_order else sorted(segments, key=_IN_TIME_ORDER):
        if end > start:
            seconds[who] = seconds.get(who, 0.0) + (end - start)
        if who == run_speaker:
            if end > run_end:
                run_end = end
            continue
        if run_speaker is not None and (longest is None or run_end - run_start > longest[0]):
            longest = (run_end - run_start, run_start, run_speaker)
        run_speaker, run_start, run_end = who, start, end
    if run_speaker is not None and (longest is None or run_end - run_start > longest[0]):
        longest = (run_end - run_start, run_start, run_speaker)
    total = sum(seconds.values())
    if total <= 0 or longest is None:
        return None
    by_affiliation = dict.fromkeys(AFFILIATIONS, 0.0)
    participants = []
    for key, spoken in sorted(seconds.items(), key=lambda item: (-item[1], item[0])):
        speaker = speakers.get(key, unknown)
        affiliation = speaker.affiliation if speaker.affiliation in by_affiliation else "unknown"
        by_affiliation[affiliation] += spoken
        participants.append({**_who(speaker), "seconds": _rounded(spoken, 1), "share": _rounded(spoken / total, 4)})
    length, start, key = longest
    return {
        "total_seconds": _rounded(total, 1),
        "participants": participants,
        **{f"{a}_share": _rounded(by_affiliation[a] / total, 4) for a in AFFILIATIONS},
        "longest_monologue": {
            **_who(speakers.get(key, unknown)),
            "seconds": _rounded(length, 1),
            "start": _rounded(start, 1),
        },
    }


# Transcript timestamps repeat across meetings (every recording starts at 00:00:00): the parsed
# seconds of the last few thousand are kept, so an hour's transcript is parsed mostly from cache.
@functools.lru_cache(maxsize=16_384)
def clock_seconds(value: str | None) -> float | None:
    """``HH:MM:SS`` (or ``MM:SS``, decimals allowed) to seconds; ``None`` when it is not one."""
    if not value:
        return None
    if len(value) == 8 and value[2] == ":" and value[5] == ":":  # HH:MM:SS, nearly always: the fast way
        h, m, sec = value[:2], value[3:5], value[6:]
        if h.isdigit() and m.isdigit() and sec.isdigit():
            return float(int(h) * 3600 + int(m) * 60 + int(sec))
    parts = value.strip().split(":")
    if not 1 <= len(parts) <= 3:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    if any(n < 0 or n != n or n == float("inf") for n in numbers):
        return None
    result = 0.0
    for number in numbers:
        result = result * 60 + number
    return result
