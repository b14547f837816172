"""The ingest-gateway's settings: the shared ones plus its own ``CALLSTREAM_GATEWAY_*`` variables."""

from __future__ import annotations

from pydantic import Field

from callstream.runtime import ServiceSettings, load_settings

DEFAULT_PORT = 8080


class Settings(ServiceSettings):
    gateway_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_GATEWAY_PORT")

    @property
    def service_name(self) -> str:
        return "ingest-gateway"

    @property
    def port(self) -> int:
        return self.gateway_port


def load() -> Settings:
    return load_settings(Settings, "callstream-gateway")
