"""The scheduler's settings: the shared ones plus its own ``CALLSTREAM_SCHEDULER_*`` variables."""

from __future__ import annotations

from pydantic import Field

from callstream.runtime import ServiceSettings, load_settings

DEFAULT_PORT = 8083


class Settings(ServiceSettings):
    scheduler_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_SCHEDULER_PORT")

    @property
    def service_name(self) -> str:
        return "scheduler"

    @property
    def port(self) -> int:
        return self.scheduler_port


def load() -> Settings:
    return load_settings(Settings, "callstream-scheduler")
