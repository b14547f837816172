"""The fake Fathom's meetings: generated from a seed, newest first, content built on request.

Only ``(recording_id, created_at)`` is kept per meeting, so 50,000 meetings cost a few MB; the
rest of a meeting is rebuilt deterministically from the seed and its id when it is served.
"""

from __future__ import annotations

import bisect
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .._text import company, hms, person, sentence

FREE_MAIL = "gmail.com"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MeetingIndex:
    """Meetings newest first; ``_keys`` (negated epoch seconds) keeps them bisectable."""

    seed: int
    recording_ids: list[int] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    _keys: list[float] = field(default_factory=list)
    content_ready_at: dict[int, float] = field(default_factory=dict)  # recording_id -> monotonic time
    # Fields a user changed at Fathom after the meeting was created (title, summary, action items):
    # served in place of the generated ones from then on.
    edits: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def generate(cls, seed: int, count: int, *, now: datetime, span: timedelta) -> MeetingIndex:
        index = cls(seed)
        base = 100_000_000 * (1 + seed % 9)
        step = span / max(count, 1)
        for i in range(count):
            created = (now - step * (i + 1)).replace(microsecond=0)
            index._append(base + count - i, created)
        return index

    def _append(self, recording_id: int, created: datetime) -> None:
        self.recording_ids.append(recording_id)
        self.created.append(created)
        self._keys.append(-created.timestamp())

    def add_newest(self, created: datetime) -> int:
        recording_id = (max(self.recording_ids) + 1) if self.recording_ids else 100_000_001
        if self.created and created <= self.created[0]:
            created = self.created[0] + timedelta(seconds=1)
        self.recording_ids.insert(0, recording_id)
        self.created.insert(0, created)
        self._keys.insert(0, -created.timestamp())
        return recording_id

    def window(self, created_after: datetime | None, created_before: datetime | None) -> range:
        """Positions of meetings with ``created_after < created_at < created_before`` (exclusive, newest first)."""
        lo = 0 if created_before is None else bisect.bisect_right(self._keys, -created_before.timestamp())
        hi = len(self._keys) if created_after is None else bisect.bisect_left(self._keys, -created_after.timestamp())
        return range(lo, max(lo, hi))

    def remove(self, recording_id: int) -> None:
        """The meeting is gone at Fathom (deleted, or its retention ran out): never listed again."""
        pos = self.position(recording_id)
        if pos is None:
            raise KeyError(recording_id)
        del self.recording_ids[pos], self.created[pos], self._keys[pos]
        self.edits.pop(recording_id, None)

    def position(self, recording_id: int) -> int | None:
        try:
            return self.recording_ids.index(recording_id)
        except ValueError:
            return None

    def content_ready(self, recording_id: int) -> bool:
        ready_at = self.content_ready_at.get(recording_id)
        return ready_at is None or time.monotonic() >= ready_at


def build_meeting(index: MeetingIndex, pos: int) -> dict[str, Any]:
    """The full meeting (every optional part); the app removes what the request did not ask for."""
    rid = index.recording_ids[pos]
    created = index.created[pos]
    rng = random.Random(f"fathom-{index.seed}-{rid}")
    own_company, own_domain = company(rng)
    ext_company, ext_domain = company(rng)
    rec_name, rec_local = person(rng)
    recorder = {
        "name": rec_name,
        "email": f"{rec_local}@{own_domain}",
        "email_domain": own_domain,
        "team": rng.choice(["Sales", "Partnerships", None]),
    }
    invitees = [
        {
            "name": rec_name,
            "email": recorder["email"],
            "email_domain": own_domain,
            "is_external": False,
            "matched_speaker_display_name": rec_name,
        }
    ]
    external = rng.random() < 0.8
    for _ in range(rng.randint(1, 3)):
        name, local = person(rng)
        domain = ext_domain if external else own_domain
        if external and rng.random() < 0.15:
            domain = FREE_MAIL
        invitees.append(
            {
                "name": name,
                "email": f"{local}@{domain}",
                "email_domain": domain,
                "is_external": domain != own_domain,
                "matched_speaker_display_name": name,
            }
        )
    duration = rng.randint(300, 3600)
    end = created - timedelta(seconds=35)
    start = end - timedelta(seconds=duration)
    sched_start = start.replace(second=0) - timedelta(minutes=rng.randint(0, 3))
    call_no = 884_000_000 + rid % 1_000_000
    url = f"https://fathom.video/calls/{call_no}"
    speakers = [i for i in invitees if i["name"]]
    transcript = []
    t = rng.randint(1, 10)
    for _ in range(rng.randint(4, 12)):
        who = rng.choice(speakers)
        transcript.append(
            {
                "speaker": {"display_name": who["name"], "matched_calendar_invitee_email": who["email"]},
                "text": sentence(rng),
                "timestamp": hms(min(t, duration)),
            }
        )
        t += rng.randint(5, 120)
    topic = rng.choice(["pilot scope", "pricing", "renewal", "security review", "roadmap"])
    summary = {
        "template_name": "General",
        "markdown_formatted": f"## Meeting Purpose\nDiscuss {topic}.\n\n## Key Takeaways\n- {sentence(rng)}\n",
    }
    assignee_name, assignee_local = person(rng)
    at = rng.randint(10, duration)
    action_items = [
        {
            "description": sentence(rng, 4, 9),
            "user_generated": rng.random() < 0.3,
            "completed": False,
            "recording_timestamp": hms(at),
            "recording_playback_url": f"{url}#t={at}",
            "assignee": {"name": assignee_name, "email": f"{assignee_local}@{own_domain}", "team": "Sales"},
        }
    ]
    if external and rng.random() < 0.6:
        crm: dict[str, Any] = {
            "contacts": [
                {
                    "name": invitees[-1]["name"],
                    "email": invitees[-1]["email"],
                    "record_url": f"https://app.hubspot.com/contacts/1/contact/{rid}",
                }
            ],
            "companies": [{"name": ext_company, "record_url": f"https://app.hubspot.com/contacts/1/company/{rid}"}],
            "deals": [
                {
                    "name": f"{ext_company} - {topic}",
                    "amount": float(rng.randint(5, 90) * 1000),
                    "record_url": f"https://app.hubspot.com/contacts/1/deal/{rid}",
                }
            ],
            "error": None,
        }
    else:
        crm = {"error": "No CRM connected"}
    highlights = []
    for _ in range(rng.randint(0, 2)):
        at = rng.randint(0, max(0, duration - 30))
        highlight: dict[str, Any] = {
            "type": rng.choice(["Action Item", "Key Moment", "Question"]),
            "summary": sentence(rng, 4, 9),
            "start_time": float(at),
            "end_time": float(at + rng.randint(5, 30)),
        }
        if rng.random() < 0.5:  # ``text`` only when it differs from the summary (fathom.md §3)
            highlight["text"] = sentence(rng)
        highlights.append(highlight)
    meeting = {
        "title": f"{own_company} x {ext_company} - {topic}" if external else f"{own_company} {topic} sync",
        "meeting_title": f"{topic.title()}: {ext_company}" if external else None,
        "recording_id": rid,
        "url": url,
        "share_url": f"https://fathom.video/share/{rng.getrandbits(120):030x}",
        "created_at": iso(created),
        "scheduled_start_time": iso(sched_start),
        "scheduled_end_time": iso(sched_start + timedelta(minutes=30 * (1 + duration // 1800))),
        "recording_start_time": iso(start),
        "recording_end_time": iso(end),
        "calendar_invitees_domains_type": "one_or_more_external" if external else "only_internal",
        "transcript_language": "en",
        "calendar_invitees": invitees,
        "recorded_by": recorder,
        "meeting_type": rng.choice([None, "Discovery Call", "Demo"]),
        "shared_with": rng.choice(["no_teams", "single_team", "all_teams"]),
        "meeting_url": f"https://meet.google.com/{rng.getrandbits(40):010x}",
        "transcript": transcript,
        "default_summary": summary,
        "action_items": action_items,
        "crm_matches": crm,
        "highlights": highlights,
    }
    meeting.update(index.edits.get(rid, {}))
    return meeting


CONTENT_FLAGS = {
    "include_transcript": "transcript",
    "include_summary": "default_summary",
    "include_action_items": "action_items",
    "include_crm_matches": "crm_matches",
}
# ``/meetings`` also takes ``include_highlights``; webhooks do not (fathom.md §2.5).
LIST_FLAGS = {**CONTENT_FLAGS, "include_highlights": "highlights"}


def shape(meeting: dict[str, Any], flags: set[str], *, content_ready: bool) -> dict[str, Any]:
    """Keep only the content the flags asked for (absent otherwise, as the real API may do);
    content that is not ready yet is an explicit null."""
    out = {k: v for k, v in meeting.items() if k not in LIST_FLAGS.values()}
    for flag, key in LIST_FLAGS.items():
        if flag in flags:
            out[key] = meeting[key] if content_ready or key == "crm_matches" else None
    return out
