"""asyncio connections to one syslog server: UDP, TCP and TLS, over IPv4 or IPv6.

`open_transport(server, cert_dir, connect_timeout=...)` returns a `Transport` whose `write(frames)`
returns only once the frames are as far as this side can know they are delivered:

- TCP / TLS: all frames go out in one `writelines`, the asyncio buffer is drained to empty (the write
  buffer limit is 0, so `drain()` waits for the last byte), then, on Linux, until the peer's TCP stack
  has acknowledged every byte (SIOCOUTQ == 0), then a short settle time (`settle_seconds`, 20 ms)
  during which a reset or close by the peer still fails the write. Only then is the batch acked. Before each
  write the connection is checked: a peer that already closed it (EOF seen by the reader task, a TLS
  alert, a reset) makes `write` raise `DeliveryError` instead of swallowing the batch.
- UDP: one datagram per message (no framing), sent on a connected socket; an ICMP "port unreachable"
  reported by the kernel fails the write so the batch is kept. UDP has no delivery guarantee beyond that.

TLS: `build_tls_context(server, cert_dir)` builds the client context. Every TLS problem, at build time or
during the handshake, becomes one `TlsConfigError` naming the server, the file and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import ssl
import struct
import sys
import termios
from pathlib import Path
from typing import Protocol

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.logging import get_logger

__all__ = [
    "DEFAULT_SETTLE_SECONDS",
    "DatagramTransport",
    "StreamTransport",
    "Transport",
    "build_tls_context",
    "handshake_error",
    "open_transport",
]

log = get_logger(__name__)

_SIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)  # same value as SIOCOUTQ on Linux
_READ_CHUNK = 65536
# TLS 1.3: the server checks the client certificate after the client considers the handshake done.
# Wait this long for its session ticket (= accepted) or alert (= refused) before the first write.
_TLS13_CONFIRM_SECONDS = 1.0
_TLS_CLOSE_GRACE_SECONDS = 0.05
# Plain syslog over TCP has no application-level acknowledgement: a receiver that closes a connection with
# unread data discards it although its TCP stack acked it (it answers with a reset). After the peer's TCP
# ack, a write waits this long for such a reset or close before it reports success, so the typical
# receiver restart mid-stream leads to a resend (duplicates), not to a loss.
DEFAULT_SETTLE_SECONDS = 0.02


class Transport(Protocol):
    """An open connection to one syslog server."""

    async def write(self, frames: list[bytes]) -> None: ...
    async def close(self) -> None: ...
    def is_closing(self) -> bool: ...


# --- TLS -----------------------------------------------------------------------------------


def _tls_versions() -> dict[str, ssl.TLSVersion]:
    return {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


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
                f"({_reason(exc)}); "
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
    ctx.minimum_version = _tls_versions()[server.tls_min_version]
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
                f"({_reason(exc)}); expected a PEM certificate and its matching unencrypted PEM key"
            ) from None
    return ctx


def _rel(p: str, cert_dir: Path) -> Path:
    path = Path(p)
    return path if path.is_absolute() or path.exists() else cert_dir / path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
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
        msg = exc.verify_message or _reason(exc)
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
    reason = _reason(exc)
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


# --- TCP / TLS -----------------------------------------------------------------------------


class StreamTransport:
    """A TCP or TLS connection; a reader task notices a peer that closed it."""

    def __init__(
        self,
        server: ServerConfig,
        cert_dir: Path,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    ) -> None:
        self.settle_seconds = settle_seconds
        self._server = server
        self._cert_dir = cert_dir
        self._reader = reader
        self._writer = writer
        self._error: BaseException | None = None
        self._eof = False
        self._closed = False
        self._written = False
        # drain() then waits for an empty buffer. asyncio's SSL transport pauses when size >= high (so
        # high=0 would never resume); the plain one when size > high.
        self._tls = writer.get_extra_info("ssl_object") is not None
        writer.transport.set_write_buffer_limits(high=1 if self._tls else 0, low=0)
        self._sock = writer.get_extra_info("socket")
        self._fd = self._sock.fileno() if self._sock is not None else -1
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while await self._reader.read(_READ_CHUNK):
                pass  # syslog servers do not talk; whatever arrives is discarded
            self._eof = True
        except ssl.SSLError as exc:
            self._error = handshake_error(self._server, self._cert_dir, exc)
        except (OSError, EOFError) as exc:
            self._error = exc
        self._eof = True

    def _peer_gone(self) -> str | None:
        if self._closed:
            return "connection closed"
        if self._error is not None:
            if isinstance(self._error, TlsConfigError):
                raise self._error
            return f"connection lost ({_reason(self._error)})"
        if self._eof or self._reader.at_eof():
            return "the server closed the connection"
        if self._writer.is_closing():
            return "connection closing"
        if self._sock is not None and self._server.server_protocol == "TCP":
            # the kernel knows about a FIN or RST even if the loop has not processed it yet
            try:
                with self._sock.dup() as probe:
                    if probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        return "the server closed the connection"
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                return f"connection lost ({_reason(exc)})"
        return None

    async def confirm_tls(self, timeout: float) -> None:
        """After the handshake, make sure the server kept the connection before anything is written.

        TLS 1.3 servers check the client certificate after the client considers the handshake done, and
        some (rsyslog) accept the handshake, then check the certificate themselves and close. Wait for the
        session ticket (TLS 1.3) or the timeout, then a short grace for such a close.
        """
        ssl_obj = self._writer.get_extra_info("ssl_object")
        if ssl_obj is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while ssl_obj.version() == "TLSv1.3" and loop.time() < deadline:
            session = ssl_obj.session
            if (session is not None and session.has_ticket) or self._error is not None or self._eof:
                break
            await asyncio.sleep(0.005)
        grace = loop.time() + min(_TLS_CLOSE_GRACE_SECONDS, timeout)
        while loop.time() < grace and self._error is None and not self._eof and not self._writer.is_closing():
            await asyncio.sleep(0.005)
        self._raise_if_refused()

    def _raise_if_refused(self) -> None:
        """Raise TlsConfigError if the TLS server dropped us before the first successful write."""
        if isinstance(self._error, TlsConfigError):
            raise self._error
        if self._written or not (self._error is not None or self._eof or self._writer.is_closing()):
            return
        if self._server.tls_client_cert:
            fix = (
                "it probably refused our client certificate: check that its CA signed "
                f"{self._server.tls_client_cert} and that the certificate is valid"
            )
        else:
            fix = "it probably requires a client certificate (mutual TLS): set tls_client_cert/tls_client_key"
        raise TlsConfigError(
            f"syslog server {self._server.label}: the server closed the TLS connection right after the "
            f"handshake; {fix}"
        )

    async def write(self, frames: list[bytes]) -> None:
        # let the loop process a pending FIN / RST / TLS alert first (the second turn runs its callbacks)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gone = self._peer_gone()
        if gone is not None:
            if self._tls:
                self._raise_if_refused()
            raise DeliveryError(f"syslog server {self._server.label}: {gone} before the write")
        try:
            self._writer.writelines(frames)
            await self._writer.drain()
            await self._wait_buffers_empty()
            await self._wait_peer_acked()
            if self.settle_seconds > 0:
                await asyncio.sleep(self.settle_seconds)
        except (OSError, RuntimeError) as exc:
            raise DeliveryError(
                f"syslog server {self._server.label}: write failed ({_reason(exc)})"
            ) from None
        except ssl.SSLError as exc:
            raise handshake_error(self._server, self._cert_dir, exc) from None
        gone = self._peer_gone()
        if gone is not None:
            if self._tls:
                self._raise_if_refused()
            raise DeliveryError(f"syslog server {self._server.label}: {gone} during the write")
        self._written = True

    async def _wait_buffers_empty(self) -> None:
        """Wait until asyncio holds no unsent byte (TLS: also the TCP transport under the TLS layer)."""
        outer = self._writer.transport
        inner = getattr(getattr(outer, "_ssl_protocol", None), "_transport", None)
        delay = 0.0005
        while outer.get_write_buffer_size() > 0 or (inner is not None and inner.get_write_buffer_size() > 0):
            if self._error is not None or self._eof or outer.is_closing():
                return  # reported by the caller's _peer_gone()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _wait_peer_acked(self) -> None:
        """Linux: wait until the kernel send queue is empty, i.e. the peer's TCP stack acked every byte."""
        if self._fd < 0 or not sys.platform.startswith("linux"):
            return
        buf = bytearray(4)
        delay = 0.0005
        while True:
            try:
                fcntl.ioctl(self._fd, _SIOCOUTQ, buf)
            except OSError:
                return
            if struct.unpack("i", buf)[0] == 0:
                return
            if self._error is not None or self._eof:
                return  # reported by the caller's _peer_gone()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def is_closing(self) -> bool:
        return self._closed or self._eof or self._error is not None or self._writer.is_closing()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self._reader_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


# --- UDP -----------------------------------------------------------------------------------


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: OSError | None = None
        self.lost = False

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class DatagramTransport:
    """A connected UDP socket: one datagram per message."""

    def __init__(
        self, server: ServerConfig, transport: asyncio.DatagramTransport, proto: _UdpProtocol
    ) -> None:
        self._server = server
        self._transport = transport
        self._proto = proto

    def _check(self, when: str) -> None:
        err = self._proto.error
        if err is not None:
            self._proto.error = None
            raise DeliveryError(f"syslog server {self._server.label}: {_reason(err)} {when}")
        if self._proto.lost or self._transport.is_closing():
            raise DeliveryError(f"syslog server {self._server.label}: UDP socket closed {when}")

    async def write(self, frames: list[bytes]) -> None:
        await asyncio.sleep(0)
        self._check("before the write")
        send = self._transport.sendto
        for f in frames:
            send(f)
        loop = asyncio.get_running_loop()
        delay = 0.0005
        while self._transport.get_write_buffer_size() > 0:  # type: ignore[attr-defined]  # typeshed omits it; asyncio's datagram transports have it
            self._check("during the write")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            if loop.is_closed():  # pragma: no cover
                break
        await asyncio.sleep(0)  # an ICMP port-unreachable for this batch shows up now
        self._check("after the write")

    def is_closing(self) -> bool:
        return self._proto.lost or self._transport.is_closing()

    async def close(self) -> None:
        self._transport.close()


# --- opening -------------------------------------------------------------------------------


async def open_transport(
    server: ServerConfig,
    cert_dir: Path,
    *,
    connect_timeout: float,
    tls_context: ssl.SSLContext | None = None,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
) -> Transport:
    """Connect to `server`. Raises DeliveryError (unreachable, refused, timeout) or TlsConfigError."""
    host, port = server.server_host, server.server_port
    try:
        if server.server_protocol == "UDP":
            loop = asyncio.get_running_loop()
            dt, proto = await asyncio.wait_for(
                loop.create_datagram_endpoint(_UdpProtocol, remote_addr=(host, port)), connect_timeout
            )
            return DatagramTransport(server, dt, proto)
        ctx = None
        if server.server_protocol == "TLS":
            ctx = tls_context or build_tls_context(server, cert_dir)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ctx,
                server_hostname=host if ctx is not None else None,
                ssl_handshake_timeout=connect_timeout if ctx is not None else None,
                limit=_READ_CHUNK,
            ),
            connect_timeout,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        t = StreamTransport(server, cert_dir, reader, writer, settle_seconds=settle_seconds)
        if ctx is not None:
            try:
                await t.confirm_tls(min(_TLS13_CONFIRM_SECONDS, connect_timeout))
            except BaseException:
                await t.close()
                raise
        return t
    except TlsConfigError:
        raise
    except ssl.SSLError as exc:
        raise handshake_error(server, cert_dir, exc) from None
    except TimeoutError:
        raise DeliveryError(
            f"syslog server {server.label}: no answer within {connect_timeout:g} s; "
            "check host, port and firewall"
        ) from None
    except ConnectionRefusedError:
        raise DeliveryError(
            f"syslog server {server.label}: connection refused; is the syslog server listening on that "
            f"{server.server_protocol} port?"
        ) from None
    except OSError as exc:
        raise DeliveryError(f"syslog server {server.label}: cannot connect ({_reason(exc)})") from None
