"""Known vulnerabilities in the pins of ``constraints.txt``, from PyPI's advisory data (the OSV records
PyPI serves with each release): ``python -m callstream.devstack._audit_pins [constraints.txt]``.

CI runs it as its own step. It exits 1 when a pin has a known advisory that is neither withdrawn nor
allowed in ``deploy/pins-audit-allow.txt``, and 0 otherwise, also when PyPI cannot be reached: then one
line says the check was skipped, because an unreachable advisory source must not block every change
(the supply chain is still held by the pins and the image locks' hashes).

Why not pip-audit: it is the well-kept tool, but it asks PyPI one release after the other (about a
minute for ~110 pins), fails the same way whether a pin is vulnerable or the network is down, and would
bring about ten more packages into every venv. This is the same query (PyPI's JSON API, the source
pip-audit's ``--vulnerability-service pypi`` uses), concurrent and bounded in time.

Where PyPI's per-release endpoint (``/pypi/<name>/<version>/json``) answers 404 (some mirrors and
proxies serve only the project endpoint), the project endpoint's advisories are used when the pin is
the latest release (they are that release's); other pins are reported as not checked, by name."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "AllowEntry",
    "AuditReport",
    "AuditSettings",
    "Pin",
    "audit",
    "main",
    "parse_allow_file",
    "parse_pins",
]

REPO = Path(__file__).resolve().parents[5]
CONSTRAINTS_FILE = REPO / "constraints.txt"
ALLOW_FILE = REPO / "deploy" / "pins-audit-allow.txt"


@dataclass(frozen=True)
class AuditSettings:
    index_url: str = "https://pypi.org/pypi"
    # Per request: a reachable PyPI answers in well under a second; a few seconds rides out a slow one.
    timeout_seconds: float = 5.0
    # Parallel requests: ~110 pins in 2-3 s. Opening all of them at once was refused by the network
    # path here (connect timeouts), eight at a time was not.
    concurrency: int = 8
    # The whole check, so that a slow or half-reachable PyPI can never hold CI for long.
    deadline_seconds: float = 40.0
    # Stop asking after this many failures before any answer: a failing DNS lookup takes ~1.5 s here,
    # so asking for all ~110 pins would take 20 s to learn what the first few already said.
    give_up_after: int = 8


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class AllowEntry:
    """An advisory knowingly accepted for one package, until a review date (then it fails again)."""

    advisory: str
    package: str
    review_by: dt.date
    reason: str


@dataclass
class AuditReport:
    pins: int = 0
    checked: list[Pin] = field(default_factory=list)
    vulnerable: list[tuple[Pin, dict[str, Any]]] = field(default_factory=list)
    allowed: list[tuple[Pin, dict[str, Any], AllowEntry]] = field(default_factory=list)
    withdrawn: list[tuple[Pin, dict[str, Any]]] = field(default_factory=list)
    unchecked: list[Pin] = field(default_factory=list)  # PyPI has no advisory data for that release
    unreachable: list[tuple[Pin, str]] = field(default_factory=list)
    expired_allows: list[AllowEntry] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.vulnerable)

    def lines(self) -> list[str]:
        out: list[str] = []
        for pin, vuln in self.vulnerable:
            out.append(f"VULNERABLE {pin}: {_describe(vuln)}")
        for pin, vuln, entry in self.allowed:
            out.append(f"allowed {pin}: {vuln.get('id')} until {entry.review_by} ({entry.reason})")
        for entry in self.expired_allows:
            out.append(f"allow entry past its review date {entry.review_by}: {entry.advisory} {entry.package}")
        if self.pins and len(self.unreachable) == self.pins:
            reason = self.unreachable[0][1]
            out.append(f"pins audit skipped: PyPI's advisory data could not be reached ({reason})")
            return out
        summary = (
            f"pins audit: {self.pins} pins, {len(self.checked)} checked against PyPI's advisories, "
            f"{len(self.vulnerable)} vulnerable, {len(self.allowed)} allowed, {len(self.withdrawn)} withdrawn ignored"
        )
        out.append(summary)
        if self.unchecked:
            names = ", ".join(str(p) for p in self.unchecked)
            out.append(
                f"not checked ({len(self.unchecked)}; PyPI serves no advisory data for these releases here): {names}"
            )
        if self.unreachable:
            names = ", ".join(str(p) for p, _ in self.unreachable)
            out.append(f"not checked ({len(self.unreachable)}; PyPI did not answer: {self.unreachable[0][1]}): {names}")
        return out


def _describe(vuln: dict[str, Any]) -> str:
    aliases = ", ".join(vuln.get("aliases") or [])
    fixed = ", ".join(vuln.get("fixed_in") or []) or "no fixed release listed"
    text = f"{vuln.get('id')}"
    if aliases:
        text += f" ({aliases})"
    text += f"; fixed in {fixed}"
    if vuln.get("link"):
        text += f"; {vuln['link']}"
    return text


def parse_pins(text: str) -> list[Pin]:
    """``name==version`` lines; comments, blanks and options are not pins."""
    pins: list[Pin] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"not an exact pin: {raw!r}")
        pins.append(Pin(name.split("[", 1)[0].strip(), version.split(";", 1)[0].strip()))
    return pins


def parse_allow_file(text: str) -> list[AllowEntry]:
    """``<advisory id> <package> <review-by YYYY-MM-DD> <why>`` per line; the why is required."""
    entries: list[AllowEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) < 4:
            raise ValueError(f"allow file line {number}: want '<advisory> <package> <review-by> <why>', got {raw!r}")
        advisory, package, review_by, reason = parts
        entries.append(
            AllowEntry(advisory, canonicalize_name(package), dt.date.fromisoformat(review_by), reason.strip())
        )
    return entries


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


class _Unreachable(Exception):
    pass


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The document, or None for 404; _Unreachable for anything that is not an answer, also for a 200
    whose JSON is not an object (a proxy's or mirror's page): that pin is skipped, the step goes on."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise _Unreachable(type(exc).__name__) from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise _Unreachable(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise _Unreachable("not JSON") from exc
    return _object(body)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unreachable("not a JSON object")
    return value


def _vulnerabilities(document: dict[str, Any]) -> list[dict[str, Any]]:
    vulns = document.get("vulnerabilities") or []
    if not isinstance(vulns, list):
        raise _Unreachable("not a JSON object")
    return [_object(vuln) for vuln in vulns]


async def _advisories(client: httpx.AsyncClient, settings: AuditSettings, pin: Pin) -> list[dict[str, Any]] | None:
    """The release's advisories, or None when PyPI has no advisory data for it."""
    base = settings.index_url.rstrip("/")
    # PyPI serves the JSON API under the normalized name only and redirects any other spelling
    # (PyYAML, typing_extensions): ask under that name rather than pay a redirect for every such pin.
    name = canonicalize_name(pin.name)
    release = await _get_json(client, f"{base}/{name}/{pin.version}/json")
    if release is not None:
        return _vulnerabilities(release)
    project = await _get_json(client, f"{base}/{name}/json")
    if project is None:
        return None
    # The project document's advisories are those of its latest release only.
    if _same_version(str(_object(project.get("info")).get("version", "")), pin.version):
        return _vulnerabilities(project)
    return None


def _allow_for(
    pin: Pin, vuln: dict[str, Any], allows: Iterable[AllowEntry], today: dt.date
) -> tuple[AllowEntry | None, AllowEntry | None]:
    """(the entry allowing this advisory for this package, an entry for it past its review date)."""
    ids = {vuln.get("id"), *(vuln.get("aliases") or [])}
    expired = None
    for entry in allows:
        if entry.package == canonicalize_name(pin.name) and entry.advisory in ids:
            if entry.review_by >= today:
                return entry, None
            expired = entry
    return None, expired


async def audit(
    pins: Sequence[Pin],
    allows: Sequence[AllowEntry] = (),
    settings: AuditSettings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    today: dt.date | None = None,
) -> AuditReport:
    settings = settings or AuditSettings()
    today = today or dt.datetime.now(dt.UTC).date()
    report = AuditReport(pins=len(pins))
    limit = asyncio.Semaphore(settings.concurrency)
    results: dict[Pin, list[dict[str, Any]] | str | None] = {}

    answers, failures = 0, 0

    async def one(client: httpx.AsyncClient, pin: Pin) -> None:
        nonlocal answers, failures
        async with limit:
            if not answers and failures >= settings.give_up_after:
                results[pin] = f"{failures} requests failed, none answered"
                return
            try:
                results[pin] = await _advisories(client, settings, pin)
                answers += 1
            except _Unreachable as exc:
                results[pin] = str(exc)
                failures += 1

    # Redirects are followed: a mirror or a renamed project may answer with one; an unfollowed 301
    # would make that pin "unreachable", never checked, so the audit could never fail for it.
    async with httpx.AsyncClient(
        transport=transport,
        timeout=settings.timeout_seconds,
        headers={"Accept": "application/json"},
        follow_redirects=True,
    ) as client:
        tasks = [asyncio.ensure_future(one(client, pin)) for pin in pins]
        try:
            async with asyncio.timeout(settings.deadline_seconds):
                await asyncio.gather(*tasks)
        except TimeoutError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    expired: dict[tuple[str, str], AllowEntry] = {}  # one line per stale entry, however many pins it named
    for pin in pins:
        result = results.get(pin, f"no answer within {settings.deadline_seconds:g} s")
        if isinstance(result, str):
            report.unreachable.append((pin, result))
            continue
        if result is None:
            report.unchecked.append(pin)
            continue
        report.checked.append(pin)
        for vuln in result:
            if vuln.get("withdrawn"):
                report.withdrawn.append((pin, vuln))
                continue
            entry, stale = _allow_for(pin, vuln, allows, today)
            if entry is not None:
                report.allowed.append((pin, vuln, entry))
                continue
            if stale is not None:
                expired[(stale.advisory, stale.package)] = stale
            report.vulnerable.append((pin, vuln))
    report.expired_allows = list(expired.values())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    constraints = Path(args[0]) if args else CONSTRAINTS_FILE
    pins = parse_pins(constraints.read_text())
    allows = parse_allow_file(ALLOW_FILE.read_text()) if ALLOW_FILE.exists() else []
    report = asyncio.run(audit(pins, allows))
    for line in report.lines():
        print(line)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
