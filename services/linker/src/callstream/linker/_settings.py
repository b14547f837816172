"""The linker's settings: the shared ones plus its own ``CALLSTREAM_LINKER_*`` variables."""

from __future__ import annotations

from pydantic import Field

from callstream.runtime import ServiceSettings, load_settings

DEFAULT_PORT = 8081


class Settings(ServiceSettings):
    linker_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_LINKER_PORT")

    @property
    def service_name(self) -> str:
        return "linker"

    @property
    def port(self) -> int:
        return self.linker_port


def load() -> Settings:
    return load_settings(Settings, "callstream-linker")
