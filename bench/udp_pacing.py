"""UDP pacing: which `udp_rate_limit` lets a burst arrive complete at a plain Python receiver.

For each rate (messages per second; 0 = unpaced) and each burst, it runs the real service
(`python -m siemconn run`) against the fake RUX tenant seeded with that many detections and a fresh
data_dir, so the first pull queues the whole burst and the writer drains it at once (1,200 events: a
first pull; 20,000: a backlog drain). The receiver is `python -m siemconn.devtools.udp_sink`: the Linux
default receive buffer, one `recv` per datagram in a Python loop, messages kept in memory. It
reports received / sent per run and the achieved send rate (first to last datagram at the receiver).

    python bench/udp_pacing.py [--rates 0,2000,5000,10000,20000] [--bursts 1200,20000] [--repeat 3]

Prints a markdown table (docs/reliability.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PY = sys.executable
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """The udp_sink subprocess; `received` follows its once-a-second reports."""

    def __init__(self, out: Path) -> None:
        self.port = free_udp_port()
        self.out = out
        self.proc = subprocess.Popen(
            [PY, "-m", "siemconn.devtools.udp_sink", "--port", str(self.port), "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.received = 0
        self.rcvbuf = 0
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(10):
            self.proc.kill()
            raise RuntimeError("udp_sink did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            obj = json.loads(line)
            self.rcvbuf = obj.get("rcvbuf", self.rcvbuf)
            if obj.get("ready"):
                self._ready.set()
            else:
                self.received = int(obj["received"])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        time.sleep(0.1)
        return self.received


def start_fake(workdir: Path, detections: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        PY, "-m", "siemconn.devtools.fake_rux", "--port", "0",
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--seed-detections", str(detections), "--seed-span-hours", "6",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=workdir)
    assert proc.stdout is not None
    m = re.search(r"(http://\S+)", proc.stdout.readline())
    if not m:
        proc.kill()
        raise RuntimeError("fake RUX did not start")
    return proc, m.group(1)


def one_run(workdir: Path, rate: int, burst: int) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"udp-{rate}-{burst}-", dir=workdir))
    fake, url = start_fake(run_dir, burst)
    rx = Receiver(run_dir / "received.log")
    every_hour = "0 * * * *"
    cfg = {
        "configuration": {
            "server": [
                {
                    "name": "udp1",
                    "server_protocol": "UDP",
                    "server_host": "127.0.0.1",
                    "server_port": rx.port,
                    "udp_rate_limit": rate,
                }
            ],
            "scheduler": {"audit": every_hour, "detections": every_hour, "entity_scoring": every_hour},
            "retry_count": -1,
            "data_dir": str(run_dir / "data"),
            "log_dir": str(run_dir / "logs"),
            "log_format": "json",
        }
    }
    (run_dir / "config.json").write_text(json.dumps(cfg))
    env = {**os.environ, "BASE_URL": url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET}
    with open(run_dir / "siemconn.out", "wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "siemconn", "run", "--config", str(run_dir / "config.json")],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 120
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            n = rx.received
            if n >= burst:
                break
            if n != last:
                last, since = n, time.monotonic()
            elif n and time.monotonic() - since > 3.0:
                break  # nothing more arrives: the rest was dropped
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)
    received = rx.stop()
    return {"rate": rate, "burst": burst, "received": received, "rcvbuf": rx.rcvbuf}


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="0,2000,5000,10000,20000")
    ap.add_argument("--bursts", default="1200,20000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="siemconn-udp-pacing-"))
    rows: list[tuple[int, int, list[int], int]] = []
    for rate in (int(r) for r in args.rates.split(",")):
        for burst in (int(b) for b in args.bursts.split(",")):
            got = []
            rcvbuf = 0
            for _ in range(args.repeat):
                r = one_run(workdir, rate, burst)
                got.append(r["received"])
                rcvbuf = r["rcvbuf"]
                print(json.dumps(r), file=sys.stderr, flush=True)
            rows.append((rate, burst, got, rcvbuf))
    lines = [
        "| udp_rate_limit (msg/s) | burst | received per run | complete runs |",
        "|---|---|---|---|",
    ]
    for rate, burst, got, _ in rows:
        ok = sum(g >= burst for g in got)
        lines.append(
            f"| {rate or 'unpaced (0)'} | {burst:,} | {', '.join(f'{g:,}' for g in got)} | {ok} of {len(got)} |"
        )
    print(f"receiver SO_RCVBUF as reported by the kernel: {rows[0][3] if rows else '?'} bytes")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
