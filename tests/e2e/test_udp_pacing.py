"""UDP pacing: with the default `udp_rate_limit`, a first pull (1,200 events) and a backlog drain (20,000)
arrive complete at a receiver that keeps the Linux default receive buffer and reads in a Python loop
(siemconn.devtools.udp_sink). Completeness is asserted, not timing; the rates are measured by
bench/udp_pacing.py (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.e2e import Connector, expected_payloads, received, start_fake, summary
from support.reliability import figure, wait_for

from siemconn.config import DEFAULT_UDP_RATE_LIMIT, ServerConfig
from siemconn.syslog.transport import open_transport

pytestmark = pytest.mark.e2e


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UdpSink:
    """python -m siemconn.devtools.udp_sink in a subprocess, writing what it receives to a file."""

    def __init__(self, out: Path) -> None:
        self.port = _udp_port()
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siemconn.devtools.udp_sink", "--port", str(self.port), "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        assert ready["ready"]
        self.rcvbuf = int(ready["rcvbuf"])
        self.received = 0
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.received = int(json.loads(line)["received"])

    def stop(self) -> list[str]:
        """Stop the receiver; every message it received, one per line."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.out.exists():
            return []
        return self.out.read_bytes().decode("utf-8", "replace").split("\n")[:-1]


def _settled(sink: UdpSink, want: int, quiet: float = 3.0) -> bool:
    """True once `want` datagrams arrived, or nothing new arrived for `quiet` s (the rest was dropped)."""
    n = sink.received
    if n >= want:
        return True
    time.sleep(quiet)
    return sink.received == n and n > 0


@pytest.mark.parametrize("burst", [1200, 20000], ids=["first-pull-1200", "backlog-20000"])
def test_paced_udp_burst_arrives_complete(tmp_path: Path, burst: int) -> None:
    fake = start_fake(seed_detections=burst)
    sink = UdpSink(tmp_path / "received.log")
    assert sink.rcvbuf <= 256 * 1024  # the kernel default, not a tuned buffer
    server = {"name": "udp1", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": sink.port}
    conn = Connector(tmp_path / "c", fake.url, [server], schedule="0 * * * *").start()
    try:
        wait_for(lambda: _settled(sink, burst), 150, f"{burst} datagrams")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        lines = sink.stop()
        fake.stop()
    counts, _ = received(lines)
    s = summary(expected_payloads(fake), counts)
    figure(f"udp_paced[{burst}]", {**s, "udp_rate_limit": DEFAULT_UDP_RATE_LIMIT, "rcvbuf": sink.rcvbuf})
    assert s["expected"] == burst
    assert s["missing"] == 0, s
    assert s["duplicated"] == 0 and s["unexpected"] == 0, s


async def test_paced_write_sends_every_frame_in_order(tmp_path: Path) -> None:
    """The pacing loop (bursts, schedule across writes) loses, duplicates and reorders nothing."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    server = ServerConfig.model_validate(
        {
            "name": "u",
            "server_protocol": "UDP",
            "server_host": "127.0.0.1",
            "server_port": rx.getsockname()[1],
            "udp_rate_limit": 20000,
        }
    )
    t = await open_transport(server, tmp_path, connect_timeout=5)
    got: list[bytes] = []
    for k in range(0, 3000, 700):
        await t.write([b"m%d" % i for i in range(k, min(k + 700, 3000))])
        while True:
            try:
                got.append(rx.recv(100))
            except BlockingIOError:
                break
    await t.close()
    await asyncio.sleep(0.05)
    while True:
        try:
            got.append(rx.recv(100))
        except BlockingIOError:
            break
    rx.close()
    assert got == [b"m%d" % i for i in range(3000)]
