"""Replay by delivery time (issue 28, item 9): `siemconn replay --sent-since/--sent-until` re-sends
exactly the events that server acknowledged in the window, whatever their event time, to that server
only. The service as a subprocess, the fake RUX tenant, real TCP listeners."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.e2e import Connector, received, start_fake
from support.reliability import figure, log_events, wait_for
from support.sinks import CountingSink

pytestmark = pytest.mark.e2e


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_replay_by_delivery_time_resends_exactly_what_was_sent_then_to_that_server(tmp_path: Path) -> None:
    a, b = CountingSink(), CountingSink()
    fake = start_fake()
    conn = Connector(
        tmp_path / "c", fake.url, [a.entry("A"), b.entry("B")], schedule="* * * * * *", retain_hours=2
    )
    conn.start()
    try:
        conn.wait_log("siemconn_started")

        def both_have(keys: set[tuple[str, int]]) -> bool:
            return keys <= set(received(a.lines())[0]) and keys <= set(received(b.lines())[0])

        before = {("detections", i) for i in fake.append("detections", 20)}
        wait_for(lambda: both_have(before), 30, "the events before the window")
        time.sleep(1.5)  # their acks are recorded before the window opens
        since = time.time()
        # the window: a backlog with event times three days old, and current audits
        old = time.time() - 3 * 86400
        inside = {
            ("detections", i) for i in fake.append("detections", 15, timestamps=[old + i for i in range(15)])
        }
        inside |= {("audit", i) for i in fake.append("audit", 5)}
        wait_for(lambda: both_have(inside), 30, "the events sent in the window")
        time.sleep(1.5)
        until = time.time()
        time.sleep(0.5)
        after = {("detections", i) for i in fake.append("detections", 10)}
        wait_for(lambda: both_have(after), 30, "the events after the window")

        r = subprocess.run(
            [
                sys.executable, "-m", "siemconn", "replay", "--config", str(conn.config_path),
                "--server", "A", "--sent-since", _iso(since), "--sent-until", _iso(until),
            ],
            cwd=conn.workdir,
            env=conn.env,
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert "the events sent to it in [" in r.stdout and "(20 events of every stream)" in r.stdout, (
            r.stdout
        )
        wait_for(lambda: bool(log_events(conn, "replay_done")), 30, "the replay")
        time.sleep(1.0)  # nothing more may arrive
        status = conn.status()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
        a.close()
        b.close()
    counts_a: Counter[tuple[str, int]] = received(a.lines())[0]
    counts_b: Counter[tuple[str, int]] = received(b.lines())[0]
    figure(
        "replay_by_sent_time",
        {"window_events": len(inside), "a_lines": len(a.lines()), "b_lines": len(b.lines())},
    )
    assert {k for k, n in counts_a.items() if n == 2} == inside  # exactly the window, once more
    assert all(counts_a[k] == 1 for k in before | after)
    assert set(counts_a) == before | inside | after and max(counts_a.values()) == 2
    assert set(counts_b) == before | inside | after and all(n == 1 for n in counts_b.values())  # B untouched
    (started,) = log_events(conn, "replay_started")
    assert started["by"] == "delivery time" and started["server"].startswith("A ")
    assert log_events(conn, "replay_done")[0]["events"] == len(inside)
    assert "sent " in status and ": done, 20 events" in status, status
