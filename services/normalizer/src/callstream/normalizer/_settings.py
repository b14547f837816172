"""The normalizer's settings: the shared ones plus its own ``CALLSTREAM_NORMALIZER_*`` variables."""

from __future__ import annotations

from pydantic import Field

from callstream.runtime import ServiceSettings, load_settings

DEFAULT_PORT = 8082


class Settings(ServiceSettings):
    normalizer_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_NORMALIZER_PORT")

    @property
    def service_name(self) -> str:
        return "normalizer"

    @property
    def port(self) -> int:
        return self.normalizer_port


def load() -> Settings:
    return load_settings(Settings, "callstream-normalizer")
