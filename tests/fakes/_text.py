"""Deterministic made-up people, companies and sentences (no Faker: 50,000 calls must be cheap)."""

from __future__ import annotations

import random

FIRST = [
    "Marisol",
    "Devon",
    "Kwabena",
    "Priya",
    "Ines",
    "Teodor",
    "Maren",
    "Jonah",
    "Aiko",
    "Lucan",
    "Rosa",
    "Emeka",
    "Sana",
    "Viktor",
    "Hedda",
    "Omar",
    "Talia",
    "Bram",
    "Yusuf",
    "Greta",
]
LAST = [
    "Etxeberria",
    "Achterberg",
    "Ashworth",
    "Vandermeer",
    "Kowalczyk",
    "Vance",
    "Okafor",
    "Preece",
    "Tanaka",
    "Moreau",
    "Lindqvist",
    "Adeyemi",
    "Halloway",
    "Novak",
    "Brandt",
    "Farouk",
    "Reyes",
    "Osei",
    "Petrov",
    "Lund",
]
COMPANY = [
    "Quillmere",
    "Tallowbrook",
    "Harborline",
    "Quillfern",
    "Brightwater",
    "Ostrava",
    "Kelpfield",
    "Marrowgate",
    "Sunderby",
    "Vellichor",
    "Pinecrest",
    "Ambergate",
    "Corvid",
    "Driftwood",
    "Ironbark",
    "Larkspur",
]
SUFFIX = ["systems", "capital", "freight", "labs", "health", "logistics", "energy", "retail"]
INDUSTRY = ["LOGISTICS_AND_SUPPLY_CHAIN", "COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "HOSPITAL_HEALTH_CARE", "RETAIL"]
TOPIC = [
    "pilot scope",
    "pricing",
    "security review",
    "renewal",
    "onboarding",
    "roadmap",
    "integration",
    "data residency",
]
WORDS = [
    "we",
    "need",
    "the",
    "rollout",
    "to",
    "cover",
    "two",
    "regions",
    "before",
    "the",
    "end",
    "of",
    "the",
    "quarter",
    "and",
    "finance",
    "wants",
    "a",
    "clear",
    "price",
    "hold",
    "legal",
    "will",
    "review",
    "the",
    "addendum",
    "next",
    "week",
    "can",
    "you",
    "send",
    "the",
    "template",
    "the",
    "team",
    "asked",
    "about",
    "single",
    "sign",
    "on",
    "and",
    "audit",
    "logs",
    "let",
    "us",
    "agree",
    "the",
    "next",
    "steps",
    "and",
    "owners",
    "today",
]


def person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first}.{last}".lower()


def company(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(COMPANY)
    suffix = rng.choice(SUFFIX)
    return f"{name} {suffix.title()}", f"{name}-{suffix}.example".lower()


def sentence(rng: random.Random, low: int = 6, high: int = 16) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + "."


def hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
