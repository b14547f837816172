"""The fake Gong's calls: generated from a seed, ordered by start time, built on request.

Only ``(id, started)`` is kept per call; the call, its parties, CRM context and transcript are
rebuilt from the seed and the id. The per-tenant host (``us-NNNNN.app.gong.io``) comes from the seed.
"""

from __future__ import annotations

import bisect
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .._text import INDUSTRY, TOPIC, company, person, sentence

DEAL_STAGES = ["appointmentscheduled", "qualifiedtobuy", "contractsent", "closedwon"]


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CallIndex:
    seed: int
    workspace_id: str
    ids: list[str] = field(default_factory=list)
    started: list[datetime] = field(default_factory=list)
    _keys: list[float] = field(default_factory=list)
    transcript_ready_at: dict[str, float] = field(default_factory=dict)  # call id -> monotonic time
    crm_version: dict[str, int] = field(default_factory=dict)  # bumped when Gong re-associates the deal
    private: set[str] = field(default_factory=set)  # calls marked ``isPrivate`` (participants only)

    @classmethod
    def generate(
        cls,
        seed: int,
        count: int,
        *,
        now: datetime,
        span: timedelta,
        workspace_id: str,
        private_every: int = 0,
    ) -> CallIndex:
        """``count`` calls evenly over ``span`` before ``now``; every ``private_every``-th one private."""
        index = cls(seed, workspace_id)
        step = span / max(count, 1)
        base = 7_000_000_000_000_000_000 + (seed % 1000) * 10**12
        for i in range(count):
            started = (now - span + step * i).replace(microsecond=0)
            call_id = str(base + i * 37 + 11)
            index._append(call_id, started)
            if private_every and i % private_every == private_every - 1:
                index.private.add(call_id)
        return index

    def _append(self, call_id: str, started: datetime) -> None:
        self.ids.append(call_id)
        self.started.append(started)
        self._keys.append(started.timestamp())
        self._pos[call_id] = len(self.ids) - 1

    def __post_init__(self) -> None:
        self._pos: dict[str, int] = {}

    def add_newest(self, started: datetime) -> str:
        call_id = str(int(self.ids[-1]) + 37) if self.ids else str(7_000_000_000_000_000_011)
        if self.started and started <= self.started[-1]:
            started = self.started[-1] + timedelta(seconds=1)
        self._append(call_id, started)
        return call_id

    def window(self, start: datetime | None, end: datetime | None) -> range:
        """Positions with ``start <= started < end``."""
        lo = 0 if start is None else bisect.bisect_left(self._keys, start.timestamp())
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end.timestamp())
        return range(lo, max(lo, hi))

    def remove(self, call_id: str) -> None:
        """The call is gone at Gong (deleted by a user): never listed again."""
        pos = self._pos.get(call_id)
        if pos is None:
            raise KeyError(call_id)
        del self.ids[pos], self.started[pos], self._keys[pos]
        self._pos = {cid: i for i, cid in enumerate(self.ids)}

    def position(self, call_id: str) -> int | None:
        return self._pos.get(call_id)

    def transcript_ready(self, call_id: str) -> bool:
        ready_at = self.transcript_ready_at.get(call_id)
        return ready_at is None or time.monotonic() >= ready_at


@dataclass(frozen=True)
class Selector:
    context: str = "None"  # None | Basic | Extended
    timings: tuple[str, ...] = ("Now",)
    parties: bool = False
    content: bool = False
    interaction: bool = False
    collaboration: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any] | None) -> Selector:
        body = body or {}
        exposed = body.get("exposedFields") or {}
        content = exposed.get("content") or {}
        interaction = exposed.get("interaction") or {}
        collab = exposed.get("collaboration") or {}
        return cls(
            context=str(body.get("context") or "None"),
            timings=tuple(body.get("contextTiming") or ("Now",)),
            parties=bool(exposed.get("parties")),
            content=any(bool(v) for v in content.values()) if isinstance(content, dict) else bool(content),
            interaction=any(bool(v) for v in interaction.values()) if isinstance(interaction, dict) else False,
            collaboration=any(bool(v) for v in collab.values()) if isinstance(collab, dict) else False,
        )


def _people(index: CallIndex, call_id: str) -> tuple[random.Random, dict[str, Any]]:
    rng = random.Random(f"gong-{index.seed}-{call_id}")
    own_name, own_domain = "Quillfern", "quillfern.example"
    ext_name, ext_domain = company(rng)
    host_name, host_local = person(rng)
    parties = [
        {
            "id": f"33{call_id[-12:]}01",
            "emailAddress": f"{host_local}@{own_domain}",
            "name": host_name,
            "title": "Account Executive",
            "userId": f"80{call_id[-10:]}",
            "speakerId": f"66{call_id[-12:]}01",
            "affiliation": "Internal",
            "methods": ["Invitee", "Attendee"],
        }
    ]
    for n in range(rng.randint(1, 3)):
        name, local = person(rng)
        party: dict[str, Any] = {
            "id": f"33{call_id[-12:]}1{n}",
            "emailAddress": f"{local}@{ext_domain}",
            "name": name,
            "title": rng.choice(["Director of Operations", "CFO", "IT Lead"]),
            "affiliation": "External",
            "methods": ["Invitee", "Attendee"],
        }
        if n == 0 or rng.random() < 0.5:
            party["speakerId"] = f"66{call_id[-12:]}1{n}"
        parties.append(party)
    return rng, {"parties": parties, "own": (own_name, own_domain), "ext": (ext_name, ext_domain)}


def _moved_account(index: CallIndex, call_id: str, version: int) -> tuple[str, str]:
    """The account a call was re-associated with, the ``version``-th time (another company)."""
    return company(random.Random(f"gong-{index.seed}-{call_id}-account-{version}"))


def build_call(index: CallIndex, pos: int, sel: Selector, *, host: str) -> dict[str, Any]:
    call_id = index.ids[pos]
    started = index.started[pos]
    rng, people = _people(index, call_id)
    ext_name, ext_domain = people["ext"]
    duration = rng.randint(120, 3600)
    topic = rng.choice(TOPIC)
    call: dict[str, Any] = {
        "metaData": {
            "id": call_id,
            "url": f"https://{host}/call?id={call_id}",
            "title": f"{ext_name} <> Quillfern | {topic.title()}",
            "scheduled": iso(started - timedelta(minutes=rng.randint(0, 5))),
            "started": iso(started),
            "duration": duration,
            "primaryUserId": people["parties"][0]["userId"],
            "direction": rng.choice(["Conference", "Outbound", "Inbound"]),
            "system": rng.choice(["Zoom", "Dialer"]),
            "scope": "External",
            "media": "Video",
            "language": "eng",
            "workspaceId": index.workspace_id,
            "sdrDisposition": None,
            "clientUniqueId": None,
            "customData": None,
            "purpose": None,
            "meetingUrl": f"https://zoom.example/j/{rng.randint(10**10, 10**11)}",
            "isPrivate": call_id in index.private,
            "calendarEventId": f"{rng.getrandbits(40):010x}@calendar.example",
        }
    }
    if sel.context in ("Basic", "Extended"):
        version = index.crm_version.get(call_id, 0)
        stage = DEAL_STAGES[min(len(DEAL_STAGES) - 1, rng.randrange(2) + version)]
        objects = []
        for timing in sel.timings:
            # Re-associated (``change_crm``): today's values name another account; the values as
            # of the call keep the one it had then.
            moved = version if timing == "Now" else 0
            acct_name, acct_domain = (ext_name, ext_domain) if moved == 0 else _moved_account(index, call_id, moved)
            account: dict[str, Any] = {
                "objectType": "Account",
                "objectId": str(21_877_000_000 + int(call_id[-6:]) + moved * 1_000_000),
                "timing": timing,
            }
            deal: dict[str, Any] = {
                "objectType": "Opportunity",
                "objectId": str(40_993_000_000 + int(call_id[-6:])),
                "timing": timing,
            }
            if sel.context == "Extended":
                account["fields"] = [
                    {"name": "name", "value": acct_name},
                    {"name": "domain", "value": acct_domain},
                    {"name": "industry", "value": rng.choice(INDUSTRY)},
                    {"name": "website", "value": f"https://www.{acct_domain}"},
                ]
                deal["fields"] = [
                    {"name": "dealname", "value": f"{ext_name} - {topic}"},
                    {"name": "amount", "value": rng.randint(5, 90) * 1000},
                    {"name": "dealstage", "value": stage},
                    {"name": "closedate", "value": (started + timedelta(days=30)).date().isoformat()},
                ]
            objects += [account, deal]
        call["context"] = [{"system": "HubSpot", "objects": objects}]
    if sel.parties:
        call["parties"] = people["parties"]
    if sel.content:
        call["content"] = {
            "topics": [{"name": topic.title(), "duration": duration // 3}],
            "trackers": [{"id": "901100", "name": "Competitors", "count": rng.randint(0, 3), "type": "KEYWORD"}],
            "brief": sentence(rng, 10, 20),
            "keyPoints": [{"text": sentence(rng)}],
            # a verbatim snippet of the transcript, as Gong sends action items
            "pointsOfInterest": {
                "actionItems": [
                    {
                        "snippetStartTime": duration // 2,
                        "snippetEndTime": duration // 2 + 9,
                        "speakerID": people["parties"][0]["speakerId"],
                        "snippet": sentence(rng),
                    }
                ]
            },
        }
    if sel.interaction:
        call["interaction"] = {
            "speakers": [
                {"id": p["id"], "userId": p.get("userId"), "talkTime": float(rng.randint(10, duration))}
                for p in people["parties"]
                if p.get("speakerId")
            ],
            "interactionStats": [{"name": "Talk Ratio", "value": round(rng.random(), 2)}],
            "questions": {"companyCount": rng.randint(0, 12), "nonCompanyCount": rng.randint(0, 12)},
        }
    if sel.collaboration:
        call["collaboration"] = {"publicComments": []}
    return call


def build_transcript(index: CallIndex, pos: int) -> dict[str, Any]:
    call_id = index.ids[pos]
    rng, people = _people(index, call_id)
    speakers = [p["speakerId"] for p in people["parties"] if p.get("speakerId")]
    monologues, t = [], rng.randint(1000, 9000)
    for _ in range(rng.randint(3, 10)):
        sentences = []
        for _ in range(rng.randint(1, 3)):
            length = rng.randint(2000, 9000)
            sentences.append({"start": t, "end": t + length, "text": sentence(rng)})
            t += length + rng.randint(50, 2000)
        monologues.append(
            {"speakerId": rng.choice(speakers), "topic": rng.choice(TOPIC).title(), "sentences": sentences}
        )
    return {"callId": call_id, "transcript": monologues}
