"""A counting syslog sink for benchmarks: TCP (LF framing), UDP, TLS or RELP on 127.0.0.1.

RELP: answers `open` with relp_version=0 / commands=syslog and every `syslog` frame with `rsp 200` as soon
as it is parsed (a receiver that stores nothing; what siemconn's RELP client costs, not rsyslog).

Prints one JSON line every 0.25 s to stdout: {"count": N, "first": t, "last": t, "bytes": B}.
Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import ssl
import time


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None

    def add(self, n: int, nbytes: int) -> None:
        if n:
            now = time.time()
            if self.first is None:
                self.first = now
            self.last = now
            self.count += n
            self.bytes += nbytes


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", choices=["tcp", "udp", "tls", "relp"], default="tcp")
    ap.add_argument("--rsp-delay", type=float, default=0.0, help="RELP: answer after this many seconds (RTT)")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    c = Counter()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            c.add(data.count(b"\n"), len(data))
        writer.close()

    async def handle_relp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        delay = args.rsp_delay
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            buf += data
            out: list[bytes] = []
            n = 0
            pos = 0
            while True:
                sp1 = buf.find(b" ", pos)
                sp2 = buf.find(b" ", sp1 + 1) if sp1 >= 0 else -1
                if sp2 < 0:
                    break
                end = sp2 + 1
                while end < len(buf) and buf[end : end + 1].isdigit():
                    end += 1
                if end >= len(buf):
                    break
                length = int(buf[sp2 + 1 : end])
                stop = end + 1 + length if length else end
                if stop >= len(buf):
                    break
                txnr, cmd = buf[pos:sp1], buf[sp1 + 1 : sp2]
                if cmd == b"open":
                    body = b"200 OK\nrelp_version=0\nrelp_software=bench-sink\ncommands=syslog"
                    out.append(b"%s rsp %d %s\n" % (txnr, len(body), body))
                elif cmd == b"syslog":
                    n += 1
                    out.append(b"%s rsp 6 200 OK\n" % txnr)
                else:
                    out.append(b"%s rsp 6 200 OK\n" % txnr)
                pos = stop + 1
            buf = buf[pos:]
            c.add(n, len(data))
            if out:
                if delay:
                    loop.call_later(delay, writer.writelines, out)
                else:
                    writer.writelines(out)
        writer.close()

    class Udp(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            c.add(1, len(data))

    if args.proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)  # capped by net.core.rmem_max
        sock.bind(("127.0.0.1", args.port))
        await loop.create_datagram_endpoint(Udp, sock=sock)
    else:
        ctx = None
        if args.proto == "tls":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.cert, args.key)
        handler = handle_relp if args.proto == "relp" else handle
        await asyncio.start_server(handler, "127.0.0.1", args.port, ssl=ctx, limit=1 << 22)
    print(json.dumps({"ready": True}), flush=True)
    while not stop.is_set():
        print(json.dumps({"count": c.count, "bytes": c.bytes, "first": c.first, "last": c.last}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
