"""retry_count counts failed reconnects, not batches reset mid-write (issue 28), end to end: the service
as a subprocess, the fake RUX tenant, and a real TCP receiver that resets its first connections."""

from __future__ import annotations

import select
import socket
import struct
import threading
from pathlib import Path

import pytest
from support.e2e import Connector, expected_payloads, received, start_fake, summary
from support.reliability import figure, log_events, wait_for

pytestmark = pytest.mark.e2e


class ResettingReceiver:
    """A TCP syslog receiver whose first `resets` connections are reset (RST) as soon as data arrives,
    with a receive window too small for a batch, so the connector is still writing when the reset comes.
    Later connections are read to the end; their LF-framed lines are kept."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.connections = 0
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # inherited by accepted sockets
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                reset = self.connections <= self.resets
            t = threading.Thread(target=self._reset if reset else self._read, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _reset(self, conn: socket.socket) -> None:
        select.select([conn], [], [], 30)  # data arrived (the connector is mid-batch)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST

    def _read(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        buf = b""
        conn.settimeout(0.5)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            with self._lock:
                self.lines.extend(d.decode("utf-8", "replace") for d in done)
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self._srv.close()


def test_batches_reset_mid_write_are_not_failed_reconnects(tmp_path: Path) -> None:
    """A receiver resets the connection during 3 batches in a row while every reconnect succeeds, with
    retry_count 2: the service does not declare the server down or exit 3, it backs off and halves the
    batch, reports the resets, and delivers every event exactly once."""
    fake = start_fake(seed_detections=300)
    rx = ResettingReceiver(resets=3)
    server = {"name": "tcp1", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": rx.port}
    conn = Connector(
        tmp_path / "c", fake.url, [server], retry_count=2, batch_size=200, max_backoff_seconds=1
    ).start()
    try:
        want = expected_payloads(fake)

        def all_there() -> bool:
            with rx._lock:
                lines = list(rx.lines)
            return set(want) <= set(received(lines)[0])

        wait_for(lambda: all_there() or not conn.alive(), 60, "every event past the resets")
        assert conn.alive(), conn.output()[-3000:]
        assert conn.terminate() == 0
    finally:
        conn.kill()
        rx.close()
        fake.stop()
    counts, _ = received(rx.lines)
    s = summary(want, counts)
    resets = log_events(conn, "syslog_write_reset") + log_events(conn, "syslog_writes_reset")
    figure("write_resets", {**s, "connections": rx.connections, "resets_logged": len(resets)})
    assert s["missing"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s
    assert rx.connections >= 4
    assert not log_events(conn, "syslog_server_down") and not log_events(conn, "all_syslog_servers_down")
    assert [r["consecutive"] for r in resets] == [1, 2, 3]
    assert [r["next_batch_events"] for r in resets] == [100, 50, 25]  # halved per consecutive reset
    assert log_events(conn, "syslog_writes_reset")[0]["consecutive"] == 3  # the error line, once
