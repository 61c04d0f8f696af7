"""An asyncio RELP client (rsyslog's Reliable Event Logging Protocol), plain or over TLS.

RELP frames are `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A session starts with an `open` command
carrying offers (`relp_version`, `commands=syslog`); the server answers `rsp` with the offers it
accepts. Every message is one `syslog` command; the server answers each with `rsp` and a status code,
in the order the commands were sent; `200` means the server took the message. The server may send the
hint `serverclose` (txnr 0) before it closes the session; `close` ends a session from our side.

`RelpTransport.write(frames)` returns only after every message of that call got `rsp 200`. So the
writer pool's rule "ack a batch in the queue only after `write()` returned" means: acked only when the
server acknowledged every event of the batch. Up to `window_size` commands are in flight at once (sent,
not yet answered). Anything else fails the write with a `DeliveryError` naming the server: a non-200
answer, an answer to a transaction we did not send or out of order, a frame we cannot parse, a
`serverclose`, or a lost connection. Nothing of a failed batch is acked; the pool reconnects and sends
the whole batch again, so the messages that had been acknowledged before the failure arrive twice.

The pool gives `write()` LF-terminated chunks (the `lf` framing): a chunk may hold many lines, and
every line is one message (formatted messages never contain a raw LF).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from pathlib import Path

from siemconn import __version__
from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.logging import get_logger
from siemconn.syslog.tcp import READ_CHUNK, close_stream, open_stream
from siemconn.syslog.tls import client_cert_fix

__all__ = ["MAX_TXNR", "RelpProtocolError", "RelpTransport", "TxnrSequence", "open_relp", "parse_frames"]

log = get_logger(__name__)

MAX_TXNR = 999_999_999  # after it, the next transaction number is 1
_MAX_HEADER = 64  # "999999999 serverclose 999999999 " is 32; anything longer is not a RELP header
_MAX_RSP_DATA = 1 << 20  # answers are short; a larger DATALEN is a framing error
_CLOSE_TIMEOUT = 1.0
_OFFERS = b"relp_version=0\nrelp_software=siemconn," + __version__.encode() + b"\ncommands=syslog"


class RelpProtocolError(Exception):
    """A frame from the server that RELP does not allow here (internal; becomes a DeliveryError)."""


def parse_frames(buf: bytearray) -> list[tuple[int, bytes, bytes]]:
    """Remove every complete frame from the front of `buf`: [(txnr, command, data)].

    An incomplete frame stays in `buf`. Raises RelpProtocolError for bytes that are not a RELP frame."""
    out: list[tuple[int, bytes, bytes]] = []
    pos = 0
    n = len(buf)
    while pos < n:
        sp1 = buf.find(b" ", pos, pos + _MAX_HEADER)
        sp2 = buf.find(b" ", sp1 + 1, pos + _MAX_HEADER) if sp1 >= 0 else -1
        end_len = -1
        if sp2 >= 0:
            # DATALEN ends with SP (data follows) or LF (DATALEN 0)
            i = sp2 + 1
            while i < n and i < pos + _MAX_HEADER and 48 <= buf[i] <= 57:
                i += 1
            if i < n:
                end_len = i
        if end_len < 0:
            if n - pos >= _MAX_HEADER:
                raise RelpProtocolError(f"no RELP header in {bytes(buf[pos : pos + 40])!r}")
            break
        txnr_s, cmd, len_s = bytes(buf[pos:sp1]), bytes(buf[sp1 + 1 : sp2]), bytes(buf[sp2 + 1 : end_len])
        if not (
            txnr_s.isdigit() and len_s.isdigit() and cmd.isalpha() and len(txnr_s) <= 9 and len(len_s) <= 9
        ):
            raise RelpProtocolError(f"bad RELP header {bytes(buf[pos:end_len])[:60]!r}")
        datalen = int(len_s)
        if datalen > _MAX_RSP_DATA:
            raise RelpProtocolError(f"RELP frame of {datalen} bytes from the server")
        if datalen == 0:
            if buf[end_len] != 10:
                raise RelpProtocolError(f"RELP frame {bytes(buf[pos : end_len + 1])!r} lacks its LF trailer")
            out.append((int(txnr_s), cmd, b""))
            pos = end_len + 1
            continue
        if buf[end_len] != 32:
            raise RelpProtocolError(f"bad RELP header {bytes(buf[pos : end_len + 1])[:60]!r}")
        start = end_len + 1
        stop = start + datalen
        if stop >= n:
            break  # data or trailer not complete yet
        if buf[stop] != 10:
            raise RelpProtocolError(f"RELP frame {txnr_s!r} {cmd!r} lacks its LF trailer")
        out.append((int(txnr_s), cmd, bytes(buf[start:stop])))
        pos = stop + 1
    if pos:
        del buf[:pos]
    return out


def _rsp_status(data: bytes) -> tuple[int, str]:
    """(status code, human text) of an `rsp` frame's data; code -1 if there is none."""
    line = data.split(b"\n", 1)[0]
    code, _, text = line.partition(b" ")
    status = int(code) if code.isdigit() and len(code) == 3 else -1
    return status, text.decode("utf-8", "replace")[:200]


def _split_messages(frames: list[bytes]) -> list[bytes]:
    """The messages of LF-terminated chunks (one message per line)."""
    if len(frames) == 1:
        parts = frames[0].split(b"\n")
    else:
        parts = b"".join(frames).split(b"\n")
    if parts and not parts[-1]:
        parts.pop()
    return parts


class TxnrSequence:
    """A session's transaction numbers: 1, 2, ... MAX_TXNR, then 1 again (librelp wraps the same way).

    Invariant: two messages in flight never share a number, since a window is far smaller than the cycle."""

    def __init__(self, first: int = 1) -> None:
        self._next = first

    def take(self) -> int:
        txnr = self._next
        self._next = 1 if txnr >= MAX_TXNR else txnr + 1
        return txnr


class RelpTransport:
    """One open RELP session; `write` waits for `rsp 200` of every message it sent."""

    def __init__(
        self,
        server: ServerConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        window_size: int,
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self.window_size = window_size
        self._txnrs = TxnrSequence()
        self._pending: deque[int] = deque()  # txnrs sent, not yet answered, in sending order
        self._open_answer: asyncio.Future[bytes] | None = None
        self._close_answer: asyncio.Future[None] | None = None
        self._error: DeliveryError | None = None
        self._changed = asyncio.Event()  # set when an answer arrived or the session failed
        self._closed = False
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    # --- receiving -------------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = DeliveryError(f"syslog server {self._server.label}: {reason}")
        self._changed.set()
        for fut in (self._open_answer, self._close_answer):
            if fut is not None and not fut.done():
                fut.set_exception(self._error)

    async def _read_loop(self) -> None:
        buf = bytearray()
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    if self._close_answer is not None and not self._close_answer.done():
                        self._close_answer.set_result(None)
                    n = len(self._pending)
                    self._fail(
                        "the RELP server closed the connection"
                        + (f" with {n} message(s) unacknowledged" if n else "")
                    )
                    return
                buf += data
                self._take_plain_acks(buf)
                for txnr, cmd, body in parse_frames(buf):
                    self._on_frame(txnr, cmd, body)
                    if self._error is not None:
                        return
        except RelpProtocolError as exc:
            self._fail(f"RELP protocol error ({exc}); the connection is dropped and the batch resent")
        except ssl.SSLError as exc:
            self._fail(f"TLS error on the RELP connection ({exc.reason or exc})")
        except OSError as exc:
            self._fail(f"RELP connection lost ({exc.strerror or type(exc).__name__})")
        except EOFError:
            self._fail("RELP connection lost (EOF)")

    def _take_plain_acks(self, buf: bytearray) -> None:
        """Fast path: remove the leading `TXNR rsp 6 200 OK` answers to the oldest pending messages.

        That is nearly every frame an imrelp server sends; anything else is left to parse_frames."""
        pending = self._pending
        if not pending or self._close_answer is not None:
            return
        if self._open_answer is not None and not self._open_answer.done():
            return
        pos = 0
        while pending:
            expected = b"%d rsp 6 200 OK\n" % pending[0]
            if not buf.startswith(expected, pos):
                break
            pending.popleft()
            pos += len(expected)
        if pos:
            del buf[:pos]
            self._changed.set()

    def _on_frame(self, txnr: int, cmd: bytes, data: bytes) -> None:
        if cmd == b"serverclose" and txnr == 0:
            n = len(self._pending)
            self._fail(
                "the RELP server closed the session (serverclose)"
                + (f" with {n} message(s) unacknowledged" if n else "")
            )
            return
        if cmd != b"rsp":
            self._fail(
                f"unexpected RELP frame {cmd.decode('ascii', 'replace')!r} (txnr {txnr}) from the server"
            )
            return
        if not self._pending or self._pending[0] != txnr:
            want = self._pending[0] if self._pending else None
            self._fail(
                f"RELP answer for transaction {txnr}, expected "
                + (f"{want}" if want is not None else "none (nothing was sent)")
            )
            return
        self._pending.popleft()
        status, text = _rsp_status(data)
        if self._open_answer is not None and not self._open_answer.done():
            self._open_answer.set_result(data)
            return
        if self._close_answer is not None and not self._close_answer.done() and not self._pending:
            self._close_answer.set_result(None)
            return
        if status != 200:
            self._fail(
                f"the RELP server refused message {txnr} with status {status} {text!r}; "
                "the batch is kept and sent again"
            )
            return
        self._changed.set()

    # --- sending ---------------------------------------------------------------------------------

    def _check(self, when: str) -> None:
        if self._error is not None:
            raise DeliveryError(f"{self._error} {when}".rstrip())
        if self._closed:
            raise DeliveryError(f"syslog server {self._server.label}: RELP session closed {when}")

    async def open_session(self) -> None:
        """Send `open` with our offers; the session is ready once the server accepted them."""
        loop = asyncio.get_running_loop()
        self._open_answer = loop.create_future()
        self._send_command(b"open", _OFFERS)
        await self._writer.drain()
        data = await self._open_answer
        status, text = _rsp_status(data)
        if status != 200:
            raise DeliveryError(
                f"syslog server {self._server.label}: the RELP server refused the session "
                f"(status {status} {text!r})"
            )
        offers = data.split(b"\n")[1:]
        commands = next((o for o in offers if o.startswith(b"commands=")), None)
        if not any(o.startswith(b"relp_version=") for o in offers):
            raise DeliveryError(
                f"syslog server {self._server.label}: the RELP server's answer to open has no relp_version; "
                "is this port a RELP listener (rsyslog imrelp)?"
            )
        if commands is not None and b"syslog" not in commands[len(b"commands=") :].split(b","):
            raise DeliveryError(
                f"syslog server {self._server.label}: the RELP server does not accept the syslog command"
            )

    def _send_command(self, cmd: bytes, data: bytes) -> None:
        txnr = self._txnrs.take()
        self._pending.append(txnr)
        if data:
            self._writer.write(b"%d %s %d %s\n" % (txnr, cmd, len(data), data))
        else:
            self._writer.write(b"%d %s 0\n" % (txnr, cmd))

    async def write(self, frames: list[bytes]) -> None:
        await asyncio.sleep(0)  # let the reader task process a pending close first
        self._check("before the write")
        messages = _split_messages(frames)
        window = self.window_size
        pending = self._pending
        changed = self._changed
        i, n = 0, len(messages)
        try:
            while i < n:
                space = window - len(pending)
                if space <= 0:
                    changed.clear()
                    await changed.wait()
                    self._check("during the write")
                    continue
                chunk = messages[i : i + space]
                i += len(chunk)
                out = []
                for msg in chunk:
                    txnr = self._txnrs.take()
                    pending.append(txnr)
                    out.append(b"%d syslog %d %s\n" % (txnr, len(msg), msg))
                self._writer.writelines(out)
                await self._writer.drain()
                self._check("during the write")
            while pending:
                changed.clear()
                await changed.wait()
                self._check("while waiting for the acknowledgements")
        except (OSError, RuntimeError) as exc:
            raise DeliveryError(f"syslog server {self._server.label}: RELP write failed ({exc})") from None
        except ssl.SSLError as exc:
            raise DeliveryError(
                f"syslog server {self._server.label}: TLS error on the RELP connection ({exc.reason or exc})"
            ) from None

    def is_closing(self) -> bool:
        return self._closed or self._error is not None or self._writer.is_closing()

    async def close(self) -> None:
        """Send `close` (when the session is healthy and idle), wait briefly for its answer, disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._error is None and not self._pending and not self._writer.is_closing():
            self._close_answer = asyncio.get_running_loop().create_future()
            with contextlib.suppress(Exception):
                self._send_command(b"close", b"")
                await asyncio.wait_for(self._close_answer, _CLOSE_TIMEOUT)
        await close_stream(self._reader_task, self._writer)


async def open_relp(
    server: ServerConfig,
    cert_dir: Path,
    *,
    connect_timeout: float,
    tls_context: ssl.SSLContext | None,
) -> RelpTransport:
    """Connect to a RELP server (TLS first when `tls_context` is given) and open the session.

    Raises DeliveryError, or TlsConfigError for a TLS problem; OSError / TimeoutError / ssl.SSLError of
    the connect are left to the caller (syslog.transport.open_transport translates them)."""
    ctx = tls_context
    reader, writer = await open_stream(server, ctx, connect_timeout=connect_timeout)
    t = RelpTransport(server, reader, writer, window_size=server.window_size)
    try:
        await asyncio.wait_for(t.open_session(), connect_timeout)
    except TimeoutError:
        await t.close()
        raise DeliveryError(
            f"syslog server {server.label}: no answer to the RELP open within {connect_timeout:g} s; "
            "is this port a RELP listener (rsyslog imrelp)?"
        ) from None
    except DeliveryError as exc:
        await t.close()
        if ctx is not None and "closed the connection" in str(exc):
            raise _tls_refused(server) from None
        raise
    except BaseException:
        await t.close()
        raise
    return t


def _tls_refused(server: ServerConfig) -> TlsConfigError:
    return TlsConfigError(
        f"syslog server {server.label}: the RELP server closed the TLS connection before the session "
        f"opened; {client_cert_fix(server)}"
    )
