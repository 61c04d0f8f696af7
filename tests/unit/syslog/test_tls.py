"""siemconn.syslog.tls: the client TLS context of a syslog server (the pinned cert/NAME.pem, the system
store, tls_min_version, client certificates) and errors that name the server, the file and the fix. The
handshakes are tests/unit/syslog/test_transport.py."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from support.certs import make_certs

from siemconn.config import ServerConfig
from siemconn.errors import TlsConfigError
from siemconn.syslog.transport import build_tls_context


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TLS",
        "server_host": "127.0.0.1",
        "server_port": 6514,
    }
    return ServerConfig.model_validate(base | kw)


def test_tls_context_pins_the_reference_cert_file(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "c")
    cert_dir = tmp_path / "cert"
    cert_dir.mkdir()
    (cert_dir / "s1.pem").write_bytes(certs.ca.read_bytes())  # the reference's cert/NAME.pem
    ctx = build_tls_context(server(), cert_dir)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.cert_store_stats()["x509_ca"] >= 1
    assert (
        build_tls_context(server(tls_min_version="1.3"), cert_dir).minimum_version == ssl.TLSVersion.TLSv1_3
    )


def test_tls_context_falls_back_to_system_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = build_tls_context(server(), tmp_path)  # no cert/s1.pem
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert "tls_ca_not_pinned" in capsys.readouterr().out


def test_tls_context_errors_name_server_file_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError) as e:
        build_tls_context(server(tls_ca_file=str(missing)), tmp_path)
    assert "s1" in str(e.value) and str(missing) in str(e.value) and "fix the path" in str(e.value)

    bad = tmp_path / "s1.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsConfigError, match=r"s1 .*s1\.pem is not a readable PEM certificate"):
        build_tls_context(server(), tmp_path)
    bad.unlink()

    certs = make_certs(tmp_path / "c")
    with pytest.raises(TlsConfigError, match=r"tls_client_cert file .*absent\.pem does not exist"):
        build_tls_context(
            server(tls_client_cert="absent.pem", tls_client_key=str(certs.client_key)), tmp_path
        )
    with pytest.raises(TlsConfigError, match="cannot be loaded.*matching unencrypted PEM key"):
        build_tls_context(
            server(tls_client_cert=str(certs.client_cert), tls_client_key=str(certs.server_key)), tmp_path
        )
    # relative client paths are taken from cert_dir
    (tmp_path / "client.pem").write_bytes(certs.client_cert.read_bytes())
    (tmp_path / "client.key").write_bytes(certs.client_key.read_bytes())
    build_tls_context(server(tls_client_cert="client.pem", tls_client_key="client.key"), tmp_path)


def test_tls_verify_hostname_opt_out_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = build_tls_context(server(tls_verify_hostname=False), tmp_path)
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert "tls_hostname_verification_disabled" in capsys.readouterr().out
