"""The pins audit's decisions (issue #20, item 4), against a fake PyPI (httpx.MockTransport): a
vulnerable pin fails, a withdrawn advisory is ignored, an allowed one passes until its review date, and
an unreachable PyPI is one skip line, never a failure. No network."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name

from callstream.devstack import _audit_pins
from callstream.devstack._audit_pins import (
    ALLOW_FILE,
    CONSTRAINTS_FILE,
    AuditSettings,
    Pin,
    audit,
    parse_allow_file,
    parse_pins,
)

TODAY = dt.date(2026, 12, 2)
ADVISORY = {
    "id": "PYSEC-2026-1",
    "aliases": ["CVE-2026-0001", "GHSA-aaaa-bbbb-cccc"],
    "fixed_in": ["1.0.1"],
    "link": "https://osv.dev/vulnerability/PYSEC-2026-1",
    "withdrawn": None,
}
WITHDRAWN = {**ADVISORY, "id": "PYSEC-2026-2", "aliases": [], "withdrawn": "2026-05-01T00:00:00Z"}


def pypi(releases: dict[str, list[dict[str, Any]]], *, latest_only: bool = False) -> httpx.MockTransport:
    """A PyPI JSON API: ``releases`` maps ``name==version`` to its advisories. With ``latest_only`` the
    per-release endpoint answers 404 (as some proxies do) and the project endpoint serves the latest."""

    def handler(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")  # pypi/<name>[/<version>]/json
        parts[1] = canonicalize_name(parts[1])  # PyPI's names are case- and separator-insensitive
        if len(parts) == 4 and not latest_only:
            key = f"{parts[1]}=={parts[2]}"
            if key in releases:
                return httpx.Response(200, json={"info": {"version": parts[2]}, "vulnerabilities": releases[key]})
        if len(parts) == 3:
            versions = [k.split("==")[1] for k in releases if k.split("==")[0] == parts[1]]
            if versions:
                latest = versions[-1]
                vulns = releases[f"{parts[1]}=={latest}"]
                return httpx.Response(200, json={"info": {"version": latest}, "vulnerabilities": vulns})
        return httpx.Response(404)

    return httpx.MockTransport(handler)


def run(pins: list[Pin], transport: httpx.AsyncBaseTransport, allow: str = "", **settings: Any) -> Any:
    return asyncio.run(
        audit(pins, parse_allow_file(allow), AuditSettings(**settings), transport=transport, today=TODAY)
    )


def test_a_vulnerable_pin_fails_with_one_clear_line() -> None:
    report = run([Pin("good", "2.0"), Pin("bad", "1.0")], pypi({"good==2.0": [], "bad==1.0": [ADVISORY]}))
    assert report.failed
    vulnerable = [line for line in report.lines() if line.startswith("VULNERABLE")]
    assert vulnerable == [
        "VULNERABLE bad==1.0: PYSEC-2026-1 (CVE-2026-0001, GHSA-aaaa-bbbb-cccc); fixed in 1.0.1; "
        "https://osv.dev/vulnerability/PYSEC-2026-1"
    ]
    assert "2 pins, 2 checked" in report.lines()[-1]


def test_a_withdrawn_advisory_is_ignored() -> None:
    report = run([Pin("pkg", "1.0")], pypi({"pkg==1.0": [WITHDRAWN]}))
    assert not report.failed
    assert len(report.withdrawn) == 1
    assert "1 withdrawn ignored" in report.lines()[-1]


def test_an_allowed_advisory_passes_by_id_or_alias_until_its_review_date() -> None:
    transport = pypi({"bad==1.0": [ADVISORY]})
    by_alias = run([Pin("Bad", "1.0")], transport, "GHSA-aaaa-bbbb-cccc  bad  2027-01-31  the XML path is never used\n")
    assert not by_alias.failed
    assert by_alias.lines()[0] == "allowed Bad==1.0: PYSEC-2026-1 until 2027-01-31 (the XML path is never used)"

    expired = run([Pin("bad", "1.0")], transport, "PYSEC-2026-1 bad 2026-12-01 deferred to the next release\n")
    assert expired.failed
    assert any(line.startswith("allow entry past its review date 2026-12-01") for line in expired.lines())

    other_package = run([Pin("bad", "1.0")], transport, "PYSEC-2026-1 other 2027-01-31 not this one\n")
    assert other_package.failed


def test_an_allow_entry_must_say_why() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_allow_file("PYSEC-2026-1 bad 2027-01-31\n")


def test_unreachable_pypi_is_one_skip_line_and_passes() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("name resolution failed", request=request)

    report = run([Pin("a", "1"), Pin("b", "2")], httpx.MockTransport(refuse))
    assert not report.failed
    assert report.lines() == ["pins audit skipped: PyPI's advisory data could not be reached (ConnectError)"]


def test_an_unreachable_pypi_is_not_asked_for_every_pin() -> None:
    asked: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        raise httpx.ConnectError("name resolution failed", request=request)

    pins = [Pin(f"p{i}", "1") for i in range(50)]
    report = run(pins, httpx.MockTransport(refuse), concurrency=1, give_up_after=3)
    assert len(asked) == 3
    assert report.lines() == ["pins audit skipped: PyPI's advisory data could not be reached (ConnectError)"]


def test_a_pypi_that_never_answers_is_bounded_by_the_deadline() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(200)

    started = time.monotonic()
    report = run([Pin("a", "1")], httpx.MockTransport(hang), deadline_seconds=0.2)
    assert not report.failed
    assert report.lines()[0].startswith("pins audit skipped")
    assert time.monotonic() - started < 5


def test_server_errors_count_as_unreachable_not_as_clean() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    report = run([Pin("a", "1")], transport)
    assert not report.failed
    assert report.checked == []
    assert report.unreachable == [(Pin("a", "1"), "HTTP 503")]


def test_without_per_release_data_only_the_latest_release_is_checked() -> None:
    """The project endpoint's advisories are its latest release's: they say nothing of older pins."""
    transport = pypi({"old==1.0": [], "old==2.0": [], "new==3.0": [ADVISORY]}, latest_only=True)
    report = run([Pin("old", "1.0"), Pin("new", "3.0")], transport)
    assert report.failed
    assert report.unchecked == [Pin("old", "1.0")]
    assert report.lines()[-1].startswith("not checked (1; PyPI serves no advisory data")


def test_the_repository_pins_and_allow_file_parse() -> None:
    pins = parse_pins(CONSTRAINTS_FILE.read_text())
    assert pins, "constraints.txt has no pins"
    assert all(p.version for p in pins)
    parse_allow_file(ALLOW_FILE.read_text())
    with pytest.raises(ValueError, match="exact pin"):
        parse_pins("httpx>=0.27\n")


def test_the_command_exits_1_on_a_finding_and_0_when_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# header\nbad==1.0\n")

    def with_transport(transport: httpx.AsyncBaseTransport) -> Any:
        async def fake_audit(pins: Any, allows: Any) -> Any:
            return await audit(pins, allows, AuditSettings(), transport=transport, today=TODAY)

        return fake_audit

    monkeypatch.setattr(_audit_pins, "audit", with_transport(pypi({"bad==1.0": [ADVISORY]})))
    assert _audit_pins.main([str(constraints)]) == 1
    assert capsys.readouterr().out.startswith("VULNERABLE bad==1.0: PYSEC-2026-1")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    monkeypatch.setattr(_audit_pins, "audit", with_transport(httpx.MockTransport(refuse)))
    assert _audit_pins.main([str(constraints)]) == 0
    assert capsys.readouterr().out == "pins audit skipped: PyPI's advisory data could not be reached (ConnectError)\n"


def strict_pypi(releases: dict[str, list[dict[str, Any]]]) -> httpx.MockTransport:
    """PyPI as it answers: the JSON API only under the normalized name; any other spelling of the name
    is a 301 to the normalized one (https://pypi.org/pypi/PyYAML/json -> /pypi/pyyaml/json)."""

    def handler(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")  # pypi/<name>[/<version>]/json
        if parts[1] != canonicalize_name(parts[1]):
            parts[1] = canonicalize_name(parts[1])
            return httpx.Response(301, headers={"Location": "/" + "/".join(parts)})
        if len(parts) == 4 and f"{parts[1]}=={parts[2]}" in releases:
            vulns = releases[f"{parts[1]}=={parts[2]}"]
            return httpx.Response(200, json={"info": {"version": parts[2]}, "vulnerabilities": vulns})
        return httpx.Response(404)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("name", ["PyYAML", "typing_extensions", "Werkzeug", "pydantic_core", "zope.interface"])
def test_a_pin_spelled_unlike_its_normalized_name_is_checked(name: str) -> None:
    """PyPI redirects other spellings (301): asking under the pin's own spelling made every such pin
    'unreachable', so the audit could never fail for it."""
    report = run([Pin(name, "1.0")], strict_pypi({f"{canonicalize_name(name)}==1.0": [ADVISORY]}))
    assert report.unreachable == []
    assert report.checked == [Pin(name, "1.0")]
    assert report.failed
    assert report.lines()[0].startswith(f"VULNERABLE {name}==1.0: PYSEC-2026-1")


def test_a_redirect_is_followed() -> None:
    """A mirror that moves the API elsewhere (a redirect for a canonical name too) is still asked."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/pypi/"):
            return httpx.Response(302, headers={"Location": "/mirror" + request.url.path})
        return httpx.Response(200, json={"info": {"version": "1.0"}, "vulnerabilities": [ADVISORY]})

    report = run([Pin("bad", "1.0")], httpx.MockTransport(handler))
    assert report.failed


@pytest.mark.parametrize("body", [[], ["a"], "text", 3, None])
def test_a_json_answer_that_is_not_an_object_is_unreachable_not_a_crash(body: Any) -> None:
    """A proxy or mirror answering 200 with another JSON document: skip that pin, never crash the step."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=json.dumps(body).encode()))
    report = run([Pin("a", "1")], transport)
    assert not report.failed
    assert report.checked == []
    assert report.unreachable == [(Pin("a", "1"), "not a JSON object")]


def test_a_project_document_whose_info_is_not_an_object_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if len(request.url.path.strip("/").split("/")) == 4:
            return httpx.Response(404)
        return httpx.Response(200, json={"info": None, "vulnerabilities": []})

    report = run([Pin("a", "1")], httpx.MockTransport(handler))
    assert not report.failed
    assert report.unreachable == [(Pin("a", "1"), "not a JSON object")]
