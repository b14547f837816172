"""A service reaches NATS over TLS with its own identity when ``CALLSTREAM_NATS_TLS_CA`` names the
CA (issue #20, item 1); without it the server's self-signed chain is refused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callstream.devstack._servers import NatsServer, dev_nats_password, free_port
from callstream.runtime import Broker, NatsAuth, ServiceSettings

pytestmark = pytest.mark.integration


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_chain(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("callstream test CA"))
        .issuer_name(_name("callstream test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    ca, cert, key = _write_chain(tmp_path)
    server = NatsServer(tmp_path / "js", port=free_port(), name="tls-nats", tls_cert=cert, tls_key=key)
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


class _Settings(ServiceSettings):
    pass


async def test_a_service_connects_over_tls_with_its_identity(
    tls_nats: tuple[NatsServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_nats
    assert server.bare_url.startswith("tls://")
    password_file = tmp_path / "gateway.password"
    password_file.write_text(dev_nats_password(server.operator_password, "gateway") + "\n")
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", "postgresql://unused@127.0.0.1/unused")
    monkeypatch.setenv("CALLSTREAM_NATS_URL", server.bare_url)
    monkeypatch.setenv("CALLSTREAM_NATS_USER", "gateway")
    monkeypatch.setenv("CALLSTREAM_NATS_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("CALLSTREAM_NATS_TLS_CA", str(ca))
    settings = _Settings()  # type: ignore[call-arg]
    broker = Broker(settings.nats_url, "tls-check", auth=NatsAuth.from_settings(settings))
    broker.start()
    try:
        await asyncio.wait_for(broker.wait_connected(), timeout=15)
        await broker.check()  # JetStream answers the gateway's identity over TLS
    finally:
        await broker.close()


async def test_without_the_ca_the_server_is_not_trusted(tls_nats: tuple[NatsServer, Path]) -> None:
    server, _ = tls_nats
    with pytest.raises(Exception):  # noqa: B017 - ssl's verification error, wrapped by nats-py
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)
