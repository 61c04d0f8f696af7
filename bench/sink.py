"""A counting syslog sink for benchmarks: TCP (LF framing), UDP or TLS on 127.0.0.1.

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
    ap.add_argument("--proto", choices=["tcp", "udp", "tls"], default="tcp")
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
        await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=ctx, limit=1 << 22)
    print(json.dumps({"ready": True}), flush=True)
    while not stop.is_set():
        print(json.dumps({"count": c.count, "bytes": c.bytes, "first": c.first, "last": c.last}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
