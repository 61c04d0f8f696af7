"""A tiny printing syslog receiver for `make demo` and manual tests (not for production).

    python -m siemconn.devtools.receiver --tcp-port 5514 --udp-port 5514 [--host 127.0.0.1] [--width 200]

TCP accepts both LF framing and RFC 6587 octet counting (told apart per message, as rsyslog does: a frame
that starts with a digit is octet-counted). UDP takes one message per datagram. Every message is printed
on one line, `N proto peer | message`, cut to --width characters. SIGTERM / SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from siemconn.devtools.harness import split_frames

__all__ = ["Printer", "main", "serve"]


class Printer:
    """Prints one line per received message; counts them."""

    def __init__(self, out: TextIO, width: int) -> None:
        self.out = out
        self.width = width
        self.count = 0

    def __call__(self, proto: str, peer: str, message: bytes) -> None:
        self.count += 1
        text = message.decode("utf-8", errors="backslashreplace").replace("\n", "\\n")
        line = f"{self.count:6d} {proto} {peer} | {text}"
        if self.width > 0 and len(line) > self.width:
            line = line[: max(self.width - 3, 0)] + "..."
        print(line, file=self.out, flush=True)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, emit: Callable[[str, str, bytes], None]) -> None:
        self.emit = emit

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.emit("udp", f"{addr[0]}:{addr[1]}", data.rstrip(b"\n"))


async def serve(
    host: str, tcp_port: int | None, udp_port: int | None, printer: Printer, stop: asyncio.Event
) -> None:
    """Serve until `stop` is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        buf = bytearray()
        try:
            while chunk := await reader.read(65536):
                buf += chunk
                for msg in split_frames(buf):
                    printer("tcp", name, msg)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stopping: asyncio.run cancels open connections; end quietly
            return
        finally:
            if buf:
                printer("tcp", name, bytes(buf))  # an unterminated last message
            writer.close()

    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(handle, host, tcp_port) if tcp_port else None
    udp = None
    if udp_port:
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(printer), local_addr=(host, udp_port))
    parts = []
    if server is not None:
        parts.append(f"tcp/{server.sockets[0].getsockname()[1]}")
    if udp is not None:
        parts.append(f"udp/{udp.get_extra_info('sockname')[1]}")
    print(f"receiver listening on {host} {' '.join(parts)}", file=printer.out, flush=True)
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.close()
        if udp is not None:
            udp.close()
        print(f"receiver stopped after {printer.count} messages", file=printer.out, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Print the syslog messages received over TCP and UDP")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--tcp-port", type=int, default=None, help="TCP port (LF or octet-counted framing)")
    ap.add_argument("--udp-port", type=int, default=None, help="UDP port")
    ap.add_argument("--width", type=int, default=0, help="cut printed lines to this many characters (0 = no)")
    args = ap.parse_args(argv)
    if not args.tcp_port and not args.udp_port:
        ap.error("give --tcp-port and/or --udp-port")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.tcp_port, args.udp_port, Printer(sys.stdout, args.width), stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
