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

from dataclasses import dataclass
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


def _rounded(value: float, places: int) -> float:
    return round(value, places) + 0.0  # + 0.0: never -0.0


def _who(speaker: Speaker) -> dict[str, Any]:
    return {"name": speaker.name, "email": speaker.email, "affiliation": speaker.affiliation}


def talk_time(segments: list[Segment], speakers: dict[str, Speaker]) -> dict[str, Any] | None:
    unknown = Speaker(None, None, "unknown")
    seconds: dict[str, float] = {}
    for segment in segments:
        if segment.end > segment.start:
            seconds[segment.speaker] = seconds.get(segment.speaker, 0.0) + (segment.end - segment.start)
    total = sum(seconds.values())
    if total <= 0:
        return None
    by_affiliation = dict.fromkeys(AFFILIATIONS, 0.0)
    participants = []
    for key, spoken in sorted(seconds.items(), key=lambda item: (-item[1], item[0])):
        speaker = speakers.get(key, unknown)
        affiliation = speaker.affiliation if speaker.affiliation in by_affiliation else "unknown"
        by_affiliation[affiliation] += spoken
        participants.append({**_who(speaker), "seconds": _rounded(spoken, 1), "share": _rounded(spoken / total, 4)})
    return {
        "total_seconds": _rounded(total, 1),
        "participants": participants,
        **{f"{a}_share": _rounded(by_affiliation[a] / total, 4) for a in AFFILIATIONS},
        "longest_monologue": _longest_monologue(segments, speakers, unknown),
    }


def _longest_monologue(segments: list[Segment], speakers: dict[str, Speaker], unknown: Speaker) -> dict[str, Any]:
    best: tuple[float, float, str] | None = None  # (length, start, speaker)
    run: tuple[str, float, float] | None = None  # (speaker, start, end)
    for segment in [*sorted(segments, key=lambda s: (s.start, s.end)), None]:
        if run is not None and (segment is None or segment.speaker != run[0]):
            length = run[2] - run[1]
            if best is None or length > best[0]:
                best = (length, run[1], run[0])
            run = None
        if segment is None:
            break
        run = (
            (segment.speaker, segment.start, segment.end) if run is None else (run[0], run[1], max(run[2], segment.end))
        )
    assert best is not None  # talk_time() calls this only when something was said
    length, start, key = best
    return {**_who(speakers.get(key, unknown)), "seconds": _rounded(length, 1), "start": _rounded(start, 1)}


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
