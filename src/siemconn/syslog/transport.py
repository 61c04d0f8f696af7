"""asyncio connections to one syslog server: UDP, TCP and TLS, over IPv4 or IPv6, and RELP.

`open_transport(server, cert_dir, connect_timeout=...)` returns a `Transport` whose `write(frames)`
returns only once the frames are as far as this side can know they are delivered:

- TCP / TLS (`StreamTransport`, here): all frames go out in one `writelines`, the asyncio buffer is
  drained to empty (the write buffer limit is 0, so `drain()` waits for the last byte), then, on Linux,
  until the peer's TCP stack has acknowledged every byte (SIOCOUTQ == 0), then a short settle time
  (`settle_seconds`, 20 ms) during which a reset or close by the peer still fails the write. Only then
  is the batch acked. Before each write the connection is checked: a peer that already closed it (EOF
  seen by the reader task, a TLS alert, a reset) makes `write` raise `DeliveryError` instead of
  swallowing the batch.
- UDP (siemconn.syslog.udp): one datagram per message, paced; an ICMP "port unreachable" fails the
  write. UDP has no delivery guarantee beyond that.
- RELP (siemconn.syslog.relp): `write` returns after the server answered `rsp 200` to every message.

Every connect error becomes a `DeliveryError` naming the server, or a `TlsConfigError` naming the
file and the fix (siemconn.syslog.tls, which also builds the TLS context and is re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import ssl
import struct
import sys
import termios
from pathlib import Path
from typing import Protocol

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.syslog.relp import open_relp
from siemconn.syslog.tcp import READ_CHUNK, close_stream, open_stream
from siemconn.syslog.tls import build_tls_context, client_cert_fix, error_reason, handshake_error
from siemconn.syslog.udp import DatagramTransport, open_udp

__all__ = [
    "DEFAULT_SETTLE_SECONDS",
    "DatagramTransport",
    "StreamTransport",
    "Transport",
    "build_tls_context",
    "handshake_error",
    "open_transport",
]

_SIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)  # same value as SIOCOUTQ on Linux
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
            while await self._reader.read(READ_CHUNK):
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
            return f"connection lost ({error_reason(self._error)})"
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
                return f"connection lost ({error_reason(exc)})"
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
        raise TlsConfigError(
            f"syslog server {self._server.label}: the server closed the TLS connection right after the "
            f"handshake; {client_cert_fix(self._server)}"
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
                f"syslog server {self._server.label}: write failed ({error_reason(exc)})"
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
        await close_stream(self._reader_task, self._writer)


async def open_transport(
    server: ServerConfig,
    cert_dir: Path,
    *,
    connect_timeout: float,
    tls_context: ssl.SSLContext | None = None,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
) -> Transport:
    """Connect to `server`. Raises DeliveryError (unreachable, refused, timeout) or TlsConfigError."""
    try:
        if server.server_protocol == "UDP":
            return await open_udp(server, connect_timeout=connect_timeout)
        ctx = None
        if server.uses_tls:
            ctx = tls_context or build_tls_context(server, cert_dir)
        if server.server_protocol == "RELP":
            return await open_relp(server, cert_dir, connect_timeout=connect_timeout, tls_context=ctx)
        reader, writer = await open_stream(server, ctx, connect_timeout=connect_timeout)
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
    except socket.gaierror as exc:
        raise DeliveryError(
            f"syslog server {server.label}: cannot resolve server_host {server.server_host!r} "
            f"(DNS lookup failed: {error_reason(exc)}); check the host name, or use an IP address"
        ) from None
    except OSError as exc:
        raise DeliveryError(f"syslog server {server.label}: cannot connect ({error_reason(exc)})") from None
