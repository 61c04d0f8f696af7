"""Helpers of the reliability suite (tests/reliability/).

variants(ci=8, soak=60)           # [8, pytest.param(60, marks=soak)]: one short CI run, one long soak run
Appender(fake, every=0.25).start() ... .stop()   # keeps adding events to the fake tenant during a test
Supervisor(conn).poll()           # restart policy: an exit with code 3 is restarted after a short delay
kill_receiver(rsyslog)            # SIGKILL rsyslogd and drop the half-written last line of its output
tally(rsyslog, fake, "tcp")       # summary() of what one input of the receiver got
assert_no_secrets(conn, fake)     # no client secret or issued token in any output or log file
figure("name", {...})             # prints one "FIGURE name: ..." line (collected into docs/reliability.md)
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import wait_until
from siemconn.queue.schema import DB_FILE
from support.e2e import SECRET, Connector, expected_payloads, received, summary
from support.rsyslog import RsyslogReceiver

__all__ = [
    "ALL_DOWN",
    "Appender",
    "RudeReceiver",
    "Supervisor",
    "assert_no_secrets",
    "by_input",
    "db_path",
    "delivered",
    "figure",
    "kill_receiver",
    "kill_receiver_mid_backlog",
    "log_events",
    "missing_keys",
    "queue_drained",
    "random_pauses",
    "read_only",
    "status_checkpoints",
    "status_depths",
    "tally",
    "variants",
    "wait_for",
    "wait_delivered_and_quiet",
    "wait_stable",
]

ALL_DOWN = 3  # exit code: every syslog server is down


def variants(ci: int, soak: int) -> list[object]:
    """Parametrize values: `ci` runs in the default suite, `soak` only under `make soak` (-m soak)."""
    return [pytest.param(ci, id=f"ci-{ci}"), pytest.param(soak, id=f"soak-{soak}", marks=pytest.mark.soak)]


def figure(name: str, values: dict[str, Any]) -> None:
    """Print one measured figure (run pytest with -s to see them)."""
    print(f"\nFIGURE {name}: {json.dumps(values, sort_keys=True)}", flush=True)


class Appender:
    """A thread appending events to every stream of the fake tenant until stopped."""

    def __init__(
        self, fake: FakeRux, every: float = 0.25, detections: int = 6, audits: int = 2, entity: int = 2
    ):
        self.fake = fake
        self.every = every
        self.counts = {"detections": detections, "audits": audits, "entity_scoring": entity}
        self.appended = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="appender", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for stream, n in self.counts.items():
                if n:
                    self.fake.append(stream, n)
                    self.appended += n

    def start(self) -> Appender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Supervisor:
    """What Docker's or systemd's restart policy does: restart the connector `delay` s after it exited.

    Only exit code 3 (every server down) is expected; any other code fails the test.
    """

    def __init__(self, conn: Connector, delay: float = 1.0) -> None:
        self.conn = conn
        self.delay = delay
        self.restarts = 0
        self._exited_at: float | None = None

    def poll(self) -> None:
        conn = self.conn
        if conn.alive():
            return
        if self._exited_at is None:
            rc = conn.wait()
            assert rc == ALL_DOWN, f"exit code {rc}, expected {ALL_DOWN}: {conn.output()[-2000:]}"
            self._exited_at = time.monotonic()
        if time.monotonic() - self._exited_at >= self.delay:
            self._exited_at = None
            self.restarts += 1
            conn.start()


def wait_for(
    pred: Callable[[], object],
    timeout: float,
    what: str,
    tick: Callable[[], object] | None = None,
    interval: float = 0.2,
) -> None:
    """Poll `pred` (calling `tick` first, e.g. a Supervisor.poll) until true or `timeout`."""

    def ticked() -> bool:
        if tick is not None:
            tick()
        return bool(pred())

    wait_until(ticked, timeout, what, interval)


def kill_receiver(rs: RsyslogReceiver) -> None:
    """SIGKILL rsyslogd; cut its output files after the last complete line (a torn line is a lost event)."""
    rs.kill()
    for path in (rs.raw_path, rs.fields_path):
        if path.exists():
            data = path.read_bytes()
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def by_input(rs: RsyslogReceiver, proto: str) -> list[str]:
    return [f.msg for f in rs.fields_lines() if f.proto == proto]


def tally(rs: RsyslogReceiver, fake: FakeRux, proto: str) -> dict[str, int]:
    counts, _ = received(by_input(rs, proto))
    return summary(expected_payloads(fake), counts)


def delivered(rs: RsyslogReceiver, fake: FakeRux, *protos: str) -> bool:
    want = set(expected_payloads(fake))
    return all(want <= set(received(by_input(rs, p))[0]) for p in protos)


def missing_keys(rs: RsyslogReceiver, fake: FakeRux, proto: str) -> list[tuple[str, int]]:
    return sorted(set(expected_payloads(fake)) - set(received(by_input(rs, proto))[0]))


def assert_no_secrets(conn: Connector, fake: FakeRux, extra_text: str = "") -> int:
    """No client secret, access token or refresh token in stdout, the log files or `extra_text`.

    Returns how many distinct tokens were checked (the fake issued them during the run)."""
    text = conn.all_logs_text() + extra_text
    tokens = fake.issued_tokens()
    assert tokens, "the fake issued no token: the scan would prove nothing"
    assert SECRET not in text
    leaked = [t for t in tokens if t in text]
    assert not leaked, f"{len(leaked)} issued tokens appear in the output"
    # nothing that merely looks like one of the fake's tokens either (prefix + 32 url-safe characters)
    assert not re.search(r"fake-(?:at|rt)-[A-Za-z0-9_-]{20,}", text)
    return len(tokens)


def log_events(conn: Connector, name: str) -> list[dict[str, Any]]:
    return [r for r in conn.log_records() if r.get("event") == name]


def status_checkpoints(conn: Connector) -> dict[str, int | None]:
    """Checkpoints per stream key from `siemconn status` (the read-only view of the queue)."""
    out: dict[str, int | None] = {}
    for line in conn.status().splitlines():
        m = re.match(r"^(audit|detections|entity_scoring\.(?:account|host))\s+(-|\d+)\s", line)
        if m:
            out[m.group(1)] = None if m.group(2) == "-" else int(m.group(2))
    return out


def status_depths(conn: Connector) -> dict[str, int]:
    text = conn.status()
    _, _, tail = text.partition("oldest undelivered")
    out: dict[str, int] = {}
    for line in tail.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def db_path(conn: Connector) -> Path:
    return conn.workdir / "data" / DB_FILE


@contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Make `path` unwritable, even for root (chattr +i); yields how. Restored on exit."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield "chattr +i"
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=False)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield "chmod 0444"
        finally:
            path.chmod(mode)


def random_pauses(n: int, seed: int, low: float, high: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def queue_drained(conn: Connector, destinations: int) -> bool:
    """`siemconn status` shows every destination with 0 undelivered events."""
    depths = status_depths(conn)
    return len(depths) == destinations and all(v == 0 for v in depths.values())


def wait_stable(rs: RsyslogReceiver, quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the receiver's output stopped growing for `quiet` s (it has written what it got)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(rs.raw_lines())
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError("receiver output kept growing")


def kill_receiver_mid_backlog(
    rs: RsyslogReceiver, fake: FakeRux, kills: int, *, backlog: int, seen: int, timeout: float, pause: float
) -> None:
    """`kills` times: add `backlog` detections, wait until `seen` new lines arrived, SIGKILL the
    receiver (kill_receiver) and start it again `pause` s later."""
    for _ in range(kills):
        fake.append("detections", backlog)
        mark = rs.mark()
        rs.wait_for(seen, since=mark, timeout=timeout)
        kill_receiver(rs)
        time.sleep(pause)
        rs.start()


def wait_delivered_and_quiet(conn: Connector, rs: RsyslogReceiver, fake: FakeRux, timeout: float) -> None:
    """Add a few audits (a last poll's worth), wait until the connector reports both of its destinations
    drained, then until the receiver has written what it got."""
    fake.append("audits", 10)
    wait_for(lambda: queue_drained(conn, 2), timeout, "the connector to deliver its whole backlog")
    wait_stable(rs)


class RudeReceiver:
    """A TCP syslog receiver on 127.0.0.1 whose first `rude` connections read a few bytes and then close with
    the rest unread (the kernel answers with a reset): what a receiver that crashes mid-batch looks like to
    the sender. Later connections are read to the end; `lines()` are the complete lines they carried."""

    def __init__(self, rude: int = 1, read_first: int = 100) -> None:
        self.rude = rude
        self.read_first = read_first
        self.connections = 0
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            rude = self.connections <= self.rude
            t = threading.Thread(target=self._serve, args=(conn, rude), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, rude: bool) -> None:
        with conn:
            if rude:
                deadline = time.monotonic() + 10
                got = 0
                conn.settimeout(0.2)
                while got < self.read_first and time.monotonic() < deadline:
                    try:
                        chunk = conn.recv(self.read_first - got)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    got += len(chunk)
                time.sleep(0.05)  # let more of the batch arrive unread, then drop the connection
                return
            data = bytearray()
            conn.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(1 << 20)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
                cut = data.rfind(b"\n") + 1
                if cut:
                    with self._lock:
                        self._buf += data[:cut]
                    del data[:cut]

    def lines(self) -> list[str]:
        with self._lock:
            return bytes(self._buf).decode("utf-8", "replace").split("\n")[:-1]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(2)
