"""RELP window size: throughput and client CPU of siemconn's RELP client per `window_size`.

For each window it opens a RelpTransport and writes 20,000 messages of about 1.2 KB in batches of 500
(the default batch_size; each `write` returns after `rsp 200` for all 500), against:

* `bench/sink.py --proto relp`: answers at once (what the client costs), and with every answer delayed
  by `--rtt` seconds (a network round trip: throughput is then bounded by window / RTT);
* a real rsyslogd with imrelp, configured so that an ack means stored (Direct main queue, synchronous
  omfile flushed per transaction, as in the README).

    python bench/relp_window.py [--windows 1,8,32,128,512,2048] [--messages 20000] [--rtt 0.005]

Prints a markdown table (docs/reliability.md quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
RSYSLOG_CONF = """
global(workDirectory="{dir}" maxMessageSize="65536")
main_queue(queue.type="Direct")
module(load="imrelp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="rcv") {{
  action(type="omfile" file="{dir}/out.log" template="raw" asyncWriting="off" flushOnTXEnd="on")
}}
input(type="imrelp" address="127.0.0.1" port="{port}" ruleset="rcv" maxDataSize="65536")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def measure(port: int, window: int, messages: int) -> tuple[float, float]:
    from siemconn.config import ServerConfig
    from siemconn.syslog.transport import open_transport

    server = ServerConfig.model_validate(
        {
            "name": "bench",
            "server_protocol": "RELP",
            "server_host": "127.0.0.1",
            "server_port": port,
            "window_size": window,
        }
    )
    t = await open_transport(server, Path("."), connect_timeout=10)
    body = b'{"id": %d, "category": "reconnaissance", "detail": "' + b"x" * 1100 + b'"}'
    batches = [
        b"".join(
            b"<14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: " + (body % i) + b"\n"
            for i in range(k, k + 500)
        )
        for k in range(0, messages, 500)
    ]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for chunk in batches:
        await t.write([chunk])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await t.close()
    return messages / wall, cpu * 1e6 / messages


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", default="1,8,32,128,512,2048")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rtt", type=float, default=0.005)
    args = ap.parse_args(argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    windows = [int(w) for w in args.windows.split(",")]
    results: dict[str, dict[int, tuple[float, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="siemconn-relp-window-"))
    try:
        targets = [
            ("sink, immediate answers", 0.0),
            (f"sink, answers after {args.rtt * 1000:g} ms", args.rtt),
        ]
        for label, delay in targets:
            port = free_port()
            cmd = [PY, str(ROOT / "bench" / "sink.py"), "--port", str(port), "--proto", "relp"]
            sink = subprocess.Popen([*cmd, "--rsp-delay", str(delay)], stdout=subprocess.DEVNULL)
            try:
                wait_port(port)
                results[label] = {w: asyncio.run(measure(port, w, args.messages)) for w in windows}
            finally:
                sink.terminate()
                sink.wait(10)
        port = free_port()
        (work / "rsyslog.conf").write_text(RSYSLOG_CONF.format(dir=work, port=port))
        rs = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(work / "rsyslog.conf"), "-i", str(work / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port)
            label = "rsyslog imrelp, ack means stored"
            results[label] = {w: asyncio.run(measure(port, w, args.messages)) for w in windows}
        finally:
            rs.terminate()
            rs.wait(15)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: {str(w): v for w, v in r.items()} for k, r in results.items()}), file=sys.stderr)
    head = "| window_size | " + " | ".join(f"{k}: msg/s (client CPU us/msg)" for k in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for w in windows:
        cells = [f"{results[k][w][0]:,.0f} ({results[k][w][1]:.1f})" for k in results]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    print(f"{args.messages:,} messages of ~1.2 KB in batches of 500 per window size, on 127.0.0.1")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
