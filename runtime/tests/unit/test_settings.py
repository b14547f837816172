import pytest
from pydantic import Field

from callstream.runtime import ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    demo_port: int = Field(9000, ge=1, le=65535, validation_alias="CALLSTREAM_DEMO_PORT")

    @property
    def port(self) -> int:
        return self.demo_port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("CALLSTREAM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", "postgresql://u@db.internal:5432/x")
    monkeypatch.setenv("CALLSTREAM_NATS_URL", "nats://nats.internal:4222")
    return monkeypatch


def test_settings_are_read_from_callstream_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CALLSTREAM_DEMO_PORT", "9100")
    clean_env.setenv("CALLSTREAM_LOG_LEVEL", "debug")
    settings = load_settings(DemoSettings, "demo")
    assert settings.port == 9100
    assert settings.log_level == "debug"
    assert settings.database_url.get_secret_value() == "postgresql://u@db.internal:5432/x"
    assert "db.internal" not in repr(settings)  # the DSN may carry a password


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CALLSTREAM_DATABASE_URL", None, "demo: CALLSTREAM_DATABASE_URL is required"),
        ("CALLSTREAM_DEMO_PORT", "eighty", "demo: CALLSTREAM_DEMO_PORT input should be a valid integer"),
        ("CALLSTREAM_DEMO_PORT", "70000", "demo: CALLSTREAM_DEMO_PORT input should be less than or equal to 65535"),
        ("CALLSTREAM_LOG_LEVEL", "loud", "demo: CALLSTREAM_LOG_LEVEL input should be"),
    ],
)
def test_a_bad_variable_exits_2_with_one_line_naming_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str | None, message: str
) -> None:
    if value is None:
        clean_env.delenv(variable)
    else:
        clean_env.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(DemoSettings, "demo")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(message)
