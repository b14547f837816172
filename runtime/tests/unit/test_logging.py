import json

import pytest
import structlog

from callstream.runtime import REDACTED, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_secrets_tokens_and_transcripts_are_redacted_by_key(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("demo", "info", "json")
    get_logger("t").info(
        "integration created",
        integration_id="i-1",
        api_key="fathom-key-123",
        webhook_secret="whsec_abc",
        headers={"Authorization": "Bearer tok-456", "x-request-id": "r1"},
        transcript="Alice: the secret plan",
        access_token="oauth-789",
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    for secret in ("fathom-key-123", "whsec_abc", "tok-456", "the secret plan", "oauth-789"):
        assert secret not in line
    assert record["integration_id"] == "i-1"
    assert record["api_key"] == REDACTED
    assert record["headers"] == {"Authorization": REDACTED, "x-request-id": "r1"}
    assert record["service"] == "demo"
    assert record["level"] == "info"


def test_console_format_is_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("demo", "info", "console")
    get_logger("t").warning("broker slow", waited_ms=12)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "event='broker slow'" in line
    assert "waited_ms=12" in line


def test_levels_below_the_configured_one_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("demo", "warning", "json")
    get_logger("t").info("chatty")
    get_logger("t").error("important")
    err = capsys.readouterr().err
    assert "chatty" not in err
    assert "important" in err
