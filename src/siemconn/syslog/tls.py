"""The client side of TLS for syslog servers: the context, and the words for what went wrong.

`build_tls_context(server, cert_dir)` builds the client context. Every TLS problem, at build time,
during the handshake or right after it, becomes one `TlsConfigError` naming the server, the file and
the fix: `handshake_error` translates a failed handshake, `client_cert_fix` says what to check when a
server dropped the connection right after it. `error_reason` is the short text of any connection
error, shared by every transport.

Trust is pinned whenever a CA file is there (see `build_tls_context`); the system store is used only
when neither tls_ca_file nor cert/NAME.pem exists, and that is logged as a warning.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from siemconn.config import ServerConfig
from siemconn.errors import TlsConfigError
from siemconn.logging import get_logger

__all__ = ["build_tls_context", "client_cert_fix", "error_reason", "handshake_error"]

log = get_logger(__name__)

# tls_min_version -> the ssl module's version (the config allows exactly these keys)
_TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = MappingProxyType(
    {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
)


def build_tls_context(server: ServerConfig, cert_dir: Path) -> ssl.SSLContext:
    """The client TLS context for `server`; raises TlsConfigError naming the server, the file and the fix.

    Trust is pinned: when server.ca_file(cert_dir) exists (tls_ca_file, else the reference's
    cert/NAME.pem), the certificates in it are the ONLY trust anchors; neither the system store nor
    SSL_CERT_FILE / SSL_CERT_DIR is consulted, so a certificate another CA issued for that host is
    refused. A tls_ca_file that does not exist is an error. When tls_ca_file is not set and
    cert/NAME.pem does not exist, the system trust store is used (configurations that relied on it keep
    working) and `tls_ca_not_pinned` is logged as a warning. Hostname verification is on unless
    tls_verify_hostname is false (logged as a warning); the chain is verified in every case.
    """
    ca = server.ca_file(cert_dir)
    if ca.exists():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no default verify paths: nothing but the pin
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsConfigError(
                f"syslog server {server.label}: CA file {ca} is not a readable PEM certificate "
                f"({error_reason(exc)}); "
                "put the PEM certificate of the CA that signed the server's certificate there"
            ) from None
        if not ctx.get_ca_certs():
            raise TlsConfigError(
                f"syslog server {server.label}: CA file {ca} holds no CA certificate; "
                "put the PEM certificate of the CA that signed the server's certificate there"
            )
    elif server.tls_ca_file:
        raise TlsConfigError(
            f"syslog server {server.label}: CA file {ca} (tls_ca_file) does not exist; "
            "fix the path, or remove tls_ca_file to use cert/NAME.pem"
        )
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        log.warning(
            "tls_ca_not_pinned",
            server=server.name,
            missing_file=str(ca),
            trust="system trust store",
            hint=f"put the CA certificate in {ca} to trust only that CA (as the reference connector requires)",
        )
    ctx.minimum_version = _TLS_VERSIONS[server.tls_min_version]
    if not server.tls_verify_hostname:
        ctx.check_hostname = False
        log.warning(
            "tls_hostname_verification_disabled",
            server=server.name,
            hint="the certificate chain is still verified; set tls_verify_hostname true when possible",
        )
    if server.tls_client_cert and server.tls_client_key:
        cert = _rel(server.tls_client_cert, cert_dir)
        key = _rel(server.tls_client_key, cert_dir)
        for path, what in ((cert, "tls_client_cert"), (key, "tls_client_key")):
            if not path.exists():
                raise TlsConfigError(
                    f"syslog server {server.label}: {what} file {path} does not exist; "
                    "fix the path (relative paths are taken from cert_dir)"
                )
        try:
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsConfigError(
                f"syslog server {server.label}: client certificate {cert} / key {key} cannot be loaded "
                f"({error_reason(exc)}); expected a PEM certificate and its matching unencrypted PEM key"
            ) from None
    return ctx


def _rel(p: str, cert_dir: Path) -> Path:
    path = Path(p)
    return path if path.is_absolute() or path.exists() else cert_dir / path


def error_reason(exc: BaseException) -> str:
    """The short text of a connection error: the SSL reason, the errno's message, else the text."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):  # its errno is an EAI_* code, which os.strerror does not know
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def handshake_error(server: ServerConfig, cert_dir: Path, exc: ssl.SSLError) -> TlsConfigError:
    """Translate a failed TLS handshake into one clear TlsConfigError."""
    ca = server.ca_file(cert_dir)
    ca_text = str(ca) if ca.exists() else "the system trust store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        msg = exc.verify_message or error_reason(exc)
        code = exc.verify_code
        if "hostname mismatch" in msg.lower() or "ip address mismatch" in msg.lower():
            fix = (
                f"the server certificate does not name {server.server_host!r}; connect with a host name the "
                "certificate lists (SAN), reissue the certificate, or set tls_verify_hostname false"
            )
        elif code == 10 or "expired" in msg.lower():
            fix = "the server certificate has expired (or the clock is wrong); renew the server certificate"
        elif code in (2, 19, 20, 21) or "issuer" in msg.lower() or "self-signed" in msg.lower():
            fix = f"the server certificate is not signed by a CA in {ca_text}; put the right CA PEM in {ca}"
        else:
            fix = f"the server certificate was rejected; check it against {ca_text}"
        return TlsConfigError(
            f"syslog server {server.label}: TLS certificate verification failed ({msg}): {fix}"
        )
    reason = error_reason(exc)
    low = reason.lower().replace("_", " ")
    if (
        "certificate required" in low
        or "alert handshake failure" in low
        or "bad certificate" in low
        or ("unknown ca" in low)
    ):
        fix = (
            "the server refused our client certificate; set tls_client_cert/tls_client_key to a certificate "
            "the server's CA signed (mutual TLS)"
        )
    elif "version" in low or "protocol" in low:
        fix = (
            f"no common TLS version (minimum {server.tls_min_version}); "
            "lower tls_min_version or upgrade the server"
        )
    else:
        fix = "check that the port speaks TLS and the certificates match"
    return TlsConfigError(f"syslog server {server.label}: TLS handshake failed ({reason}): {fix}")


def client_cert_fix(server: ServerConfig) -> str:
    """What to check when a TLS server closed the connection right after the handshake: it refused our
    client certificate, or it wants one."""
    if server.tls_client_cert:
        return (
            "it probably refused our client certificate: check that its CA signed "
            f"{server.tls_client_cert} and that the certificate is valid"
        )
    return "it probably requires a client certificate (mutual TLS): set tls_client_cert/tls_client_key"
