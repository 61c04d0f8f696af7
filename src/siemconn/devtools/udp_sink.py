"""A UDP syslog receiver as a new user would write one: the kernel's default receive buffer, a Python loop.

    python -m siemconn.devtools.udp_sink --port 5514 [--host 127.0.0.1] [--out FILE]

It does not touch SO_RCVBUF (Linux default: net.core.rmem_default, 208 KB), reads one datagram per
`recv` in a plain loop and keeps each message in memory; on SIGTERM / SIGINT it writes them to `--out`
(if given), one per line. (Writing to a file inside the loop lets a busy disk stall the loop, which then
measures the disk, not the sender.) Once a second, and at the end, it prints
`{"received": N, "rcvbuf": BYTES}` on stdout. It is what the UDP pacing
measurement (bench/udp_pacing.py) and its test send to: pacing must be slow enough for this receiver.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from types import FrameType

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", default=None, help="append every message as one line to this file")
    args = ap.parse_args(argv)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    sock.settimeout(0.2)
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    kept: list[bytes] = []
    keep = kept.append if args.out else None
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    received = 0
    last_report = 0.0

    def report() -> None:
        print(json.dumps({"received": received, "rcvbuf": rcvbuf}), flush=True)

    print(json.dumps({"ready": True, "port": args.port, "rcvbuf": rcvbuf}), flush=True)
    while not stopping:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            data = b""
        except InterruptedError:
            continue
        if data:
            received += 1
            if keep is not None:
                keep(data)
        now = time.monotonic()
        if now - last_report >= 1.0:
            last_report = now
            report()
    sock.close()
    if args.out:
        with open(args.out, "wb") as fh:
            fh.write(b"".join(m + b"\n" for m in kept))
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
