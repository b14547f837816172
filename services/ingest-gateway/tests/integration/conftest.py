"""Fixtures of the gateway's integration tests (defined in gateway_harness, importable by name)."""

from gateway_harness import fake_provider, gateway

__all__ = ["fake_provider", "gateway"]
