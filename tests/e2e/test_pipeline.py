"""End-to-end: `python -m siemconn run` as a subprocess, the fake RUX tenant over HTTP, a real rsyslogd."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.e2e import CLIENT_ID, SECRET, Connector, expected_payloads, received, serve_fake, summary
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux, Fault
from siemconn.devtools.harness import free_port, wait_until
from siemconn.service import SIGNAL_GRACE

pytestmark = pytest.mark.e2e


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=40, seed_detections=300, seed_entity=60)


def by_proto(rs: RsyslogReceiver, proto: str) -> list[str]:
    return [f.msg for f in rs.fields_lines() if f.proto == proto]


def delivered_all(rs: RsyslogReceiver, fake: FakeRux, protos: tuple[str, ...]) -> bool:
    want = set(expected_payloads(fake))
    return all(want <= set(received(by_proto(rs, p))[0]) for p in protos)


def test_three_streams_two_servers_exactly_once(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP"), rsyslog.server_entry("udp1", "UDP")]
    ).start()
    try:
        wait_until(lambda: delivered_all(rs=rsyslog, fake=fake, protos=("tcp", "udp")), 40, "seeded events")
        fake.append("detections", 25)
        fake.append("audits", 5)
        fake.append("entity_scoring", 10)
        wait_until(lambda: delivered_all(rs=rsyslog, fake=fake, protos=("tcp", "udp")), 40, "appended events")
        assert conn.terminate() == 0
    finally:
        conn.kill()
    expected = expected_payloads(fake)
    for proto in ("tcp", "udp"):
        counts, events = received(by_proto(rsyslog, proto))
        assert summary(expected, counts) == {
            "expected": len(expected),
            "received": len(expected),
            "missing": 0,
            "duplicated": 0,
            "unexpected": 0,
        }, proto
        for key, ev in expected.items():
            assert events[key] == ev  # the JSON is the event as the API returned it
    # the application's own log lines never reach a syslog destination
    raw = rsyslog.raw_lines()
    assert len(raw) == 2 * len(expected)
    assert all(" VECTRA-SYSLOG-CONNECTOR: {" in line for line in raw)
    assert not any(
        word in line for line in raw for word in ("siemconn_started", "connected", "events_queued")
    )
    # no secret anywhere in what the process printed or logged
    assert SECRET not in conn.all_logs_text()


def test_reference_config_and_env_unchanged(tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver) -> None:
    workdir = tmp_path / "ref"
    conn = Connector(workdir, fake.url, [])
    # exactly the reference's config.json: no new keys, relative ./data ./logs ./cert, every minute
    conn.config_path.write_text(
        json.dumps(
            {
                "configuration": {
                    "server": [
                        {
                            "name": "server1",
                            "server_protocol": "tcp",
                            "server_host": "127.0.0.1",
                            "server_port": rsyslog.tcp_port,
                        }
                    ],
                    "scheduler": {
                        "audit": "* * * * *",
                        "detections": "* * * * *",
                        "entity_scoring": "* * * * *",
                    },
                    "retry_count": 2,
                }
            }
        )
    )
    conn.start()
    try:
        wait_until(lambda: delivered_all(rsyslog, fake, ("tcp",)), 40, "all events via the reference config")
        assert conn.terminate() == 0
    finally:
        conn.kill()
    assert (workdir / "data").is_dir() and (workdir / "logs").is_dir()
    assert oct((workdir / "data").stat().st_mode & 0o777) == "0o700"
    line = rsyslog.raw_lines()[0]
    assert (
        line.startswith("<14>") and line[4:24].endswith("Z") and line[24:51] == " VECTRA-SYSLOG-CONNECTOR: {"
    )


def test_sigterm_exits_clean_with_empty_queue(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")]).start()
    try:
        wait_until(lambda: delivered_all(rsyslog, fake, ("tcp",)), 40, "all events")
        conn.signal(signal.SIGTERM)
        assert conn.wait(timeout=10) == 0  # the promise: closed within 10 s
    finally:
        conn.kill()
    status = conn.status()
    depth = re.search(r"^tcp1\s+(\d+)\s", status, re.M)
    assert depth is not None and depth.group(1) == "0", status


def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    fake = FakeRux(
        seed_detections=3000, seed_audit=200, seed_entity=200, client_id=CLIENT_ID, client_secret=SECRET
    ).start()
    try:
        conn = Connector(
            tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], page_size=100, batch_size=50
        )
        conn.start()
        try:
            wait_until(lambda: len(rsyslog.raw_lines()) >= 300, 40, "first deliveries")
            conn.kill()  # SIGKILL mid-stream
            assert conn.exit_codes[-1] == -signal.SIGKILL
            fake.append("detections", 100)
            conn.start()
            wait_until(lambda: delivered_all(rsyslog, fake, ("tcp",)), 60, "everything after restart")
            assert conn.terminate() == 0
        finally:
            conn.kill()
        counts, _ = received(by_proto(rsyslog, "tcp"))
        s = summary(expected_payloads(fake), counts)
        assert s["missing"] == 0 and s["unexpected"] == 0
        assert s["duplicated"] <= 50  # at most the one batch that was in flight
    finally:
        fake.stop()


def test_one_server_refusing_does_not_hold_back_the_other(
    tmp_path: Path, fake: FakeRux, rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    up = rsyslog_factory()
    port = free_port()
    down_entry = {"name": "down1", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": port}
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [up.server_entry("up1", "TCP"), down_entry],
        retry_count=-1,
        max_backoff_seconds=1,
    ).start()
    try:
        wait_until(lambda: delivered_all(up, fake, ("tcp",)), 40, "the healthy server gets everything")
        fake.append("detections", 20)
        wait_until(lambda: delivered_all(up, fake, ("tcp",)), 40, "the healthy server stays current")
        assert conn.alive()
        # now a receiver appears on the refusing port: it catches up with the whole backlog
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        catcher = _tcp_collector(port)
        try:
            want = set(expected_payloads(fake))
            wait_until(
                lambda: want <= set(received(catcher.lines())[0]), 40, "the refusing server catches up"
            )
        finally:
            assert conn.terminate() == 0
            catcher.close()
        counts, _ = received(catcher.lines())
        assert summary(want, counts)["missing"] == 0
    finally:
        conn.kill()


class _Collector:
    """A plain TCP line collector on 127.0.0.1 (stands in for a receiver that comes up late)."""

    def __init__(self, port: int) -> None:
        import threading

        self.buf = bytearray()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self._stop = False
        self._lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        conns: list[socket.socket] = []
        import select

        while not self._stop:
            try:
                c, _ = self.sock.accept()
                c.setblocking(False)
                conns.append(c)
            except TimeoutError:
                pass
            if conns:
                r, _, _ = select.select(conns, [], [], 0.05)
                for c in r:
                    data = c.recv(1 << 20)
                    if not data:
                        conns.remove(c)
                        c.close()
                        continue
                    with self._lock:
                        self.buf += data
        for c in conns:
            c.close()

    def lines(self) -> list[str]:
        with self._lock:
            return bytes(self.buf).decode().split("\n")[:-1]

    def close(self) -> None:
        self._stop = True
        self.t.join(5)
        self.sock.close()


def _tcp_collector(port: int) -> _Collector:
    return _Collector(port)


def test_overlapping_ticks_are_skipped(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    fake = FakeRux(seed_detections=50, client_id=CLIENT_ID, client_secret=SECRET).start()
    try:
        # every detections request takes 2.5 s while the cron fires every second
        fake.add_fault(Fault(path="detections", status=None, delay=2.5, count=6))
        conn = Connector(
            tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule="* * * * * *"
        ).start()
        try:
            conn.wait_log("pull_skipped", timeout=30)
            wait_until(lambda: delivered_all(rsyslog, fake, ("tcp",)), 60, "all events despite the slow API")
            assert conn.terminate() == 0
        finally:
            conn.kill()
        skipped = [r for r in conn.log_records() if r.get("event") == "pull_skipped"]
        assert skipped and {r["stream"] for r in skipped} >= {"detections"}
        counts, _ = received(by_proto(rsyslog, "tcp"))
        assert summary(expected_payloads(fake), counts)["duplicated"] == 0
    finally:
        fake.stop()


def test_startup_to_first_event_is_reported(tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver) -> None:
    """Pull-at-startup delivers without waiting for the first cron tick (schedule: once a day)."""
    t0 = time.monotonic()
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule="0 0 1 1 *"
    ).start()
    try:
        rsyslog.wait_for(1, timeout=30)
        first = time.monotonic() - t0
        assert conn.terminate() == 0
    finally:
        conn.kill()
    print(
        f"startup to first delivered event: {first:.2f} s"
    )  # measured, not asserted (see docs/performance.md)


def test_second_signal_exits_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    """A receiver that accepts but never reads stalls the writer; SIGTERM then waits, a 2nd signal exits now."""
    fake = FakeRux(seed_detections=8000, client_id=CLIENT_ID, client_secret=SECRET).start()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)  # the kernel completes handshakes; nobody ever reads
    port = stalled.getsockname()[1]
    entry = {"name": "slow", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": port}
    conn = Connector(tmp_path / "c", fake.url, [entry])
    try:
        conn.start()
        conn.wait_log("events_queued", timeout=30)
        time.sleep(1.0)  # let the writer fill the socket buffers and block
        conn.signal(signal.SIGTERM)
        conn.wait_log("shutdown_requested", timeout=10)
        time.sleep(SIGNAL_GRACE + 0.3)  # a signal within the grace is the same request, not a second one
        assert conn.alive()  # still flushing towards a receiver that does not read
        conn.signal(signal.SIGINT)
        assert conn.wait(timeout=5) == 1
        conn.wait_log("second_signal_exit")
        stalled.close()
        catcher = _tcp_collector(port)
        try:
            conn.start()
            want = set(expected_payloads(fake))
            wait_until(
                lambda: want <= set(received(catcher.lines())[0]), 60, "everything after the hard exit"
            )
            assert conn.terminate() == 0
        finally:
            catcher.close()
        counts, _ = received(catcher.lines())
        s = summary(want, counts)
        assert s["missing"] == 0 and s["unexpected"] == 0
    finally:
        conn.kill()
        stalled.close()
        fake.stop()


def test_sigterm_during_a_slow_startup_token_exits_promptly(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    """A token endpoint that hangs must not hold SIGTERM past the 10 s shutdown promise."""
    fake = FakeRux(seed_detections=5, client_id=CLIENT_ID, client_secret=SECRET).start()
    try:
        fake.add_fault(Fault(path="oauth2/token", status=None, delay=25, count=1))
        conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")])
        conn.start()
        try:
            conn.wait_log("queue_opened")  # the token request (hanging) comes right after
            time.sleep(1.0)
            conn.signal(signal.SIGTERM)
            assert conn.wait(timeout=10) == 0
        finally:
            conn.kill()
        assert "shutdown_requested" in conn.output()
    finally:
        fake.stop()
