"""trustme certificates for TLS tests: a CA, a server certificate for 127.0.0.1, ::1 and localhost, a client
certificate (mutual TLS), and helpers for the bad cases (unknown CA, wrong name, expired)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from siemconn.devtools.harness import issue_leaf

__all__ = ["SERVER_NAMES", "TlsFiles", "make_ca_and_leaf", "make_certs", "write_leaf"]

SERVER_NAMES: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files written by `make_certs`."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the receiver uses: "unknown CA"


write_leaf = issue_leaf


def make_certs(directory: Path, server_names: tuple[str, ...] = SERVER_NAMES) -> TlsFiles:
    """Write ca.pem, server.pem/.key, client.pem/.key and other-ca.pem into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server_cert, server_key = write_leaf(ca, directory, "server", *server_names)
    client_cert, client_key = write_leaf(ca, directory, "client", "siemconn-client.example")
    trustme.CA().cert_pem.write_to_path(str(directory / "other-ca.pem"))
    return TlsFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        other_ca=directory / "other-ca.pem",
    )


def make_ca_and_leaf(
    directory: Path, stem: str, *identities: str, expired: bool = False
) -> tuple[Path, Path, Path]:
    """A fresh CA (STEM-ca.pem) and a leaf for `identities` (optionally expired): (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_path = directory / f"{stem}-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    now = datetime.now(UTC)
    if expired:
        cert, key = write_leaf(
            ca,
            directory,
            stem,
            *identities,
            not_before=now - timedelta(days=30),
            not_after=now - timedelta(days=1),
        )
    else:
        cert, key = write_leaf(ca, directory, stem, *identities)
    return ca_path, cert, key
