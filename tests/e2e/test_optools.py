"""Operator tools end to end: `status` from another directory, SIGHUP reload without loss or duplicates,
and `siemconn replay` while the service runs. siemconn runs as a real subprocess against the fake RUX
tenant; the syslog servers are real TCP listeners on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from support.e2e import CLIENT_ID, SECRET, Connector, expected_payloads, received, summary, wait_until
from support.sinks import CountingSink

from siemconn.devtools.fake_rux import FakeRux


def _cli(conn: Connector, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siemconn", *args],
        cwd=cwd or conn.workdir,
        env=conn.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _records(conn: Connector, event: str) -> list[dict[str, Any]]:
    return [r for r in conn.log_records() if r.get("event") == event]


def test_status_from_another_directory_finds_the_running_service(tmp_path: Path) -> None:
    sink = CountingSink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        with FakeRux(seed_detections=20, client_id=CLIENT_ID, client_secret=SECRET) as fake:
            conn = Connector(tmp_path / "svc", fake.url, servers=[sink.entry("tcp1")], data_dir="./data")
            conn.start()
            try:
                conn.wait_log("siemconn_started")
                wait_until(lambda: len(sink.lines()) >= 20, 30, "20 events delivered")
                data_dir = (conn.workdir / "data").absolute()

                def delivered() -> int:
                    r = _cli(conn, "status", "--config", str(conn.config_path), "--json", cwd=elsewhere)
                    return int(json.loads(r.stdout)["destinations"][0]["delivered"] or 0)

                wait_until(lambda: delivered() >= 20, 20, "status shows 20 delivered")
                r = _cli(conn, "status", "--config", str(conn.config_path), cwd=elsewhere)
                assert r.returncode == 0, r.stdout + r.stderr
                assert f"config: {conn.config_path.absolute()}" in r.stdout
                assert f"data_dir: {data_dir} (from the running service (pid {conn.pid}" in r.stdout
                assert f"queue: {data_dir / 'queue.db'}" in r.stdout
                assert "service: running" in r.stdout
                assert "server tcp1 (TCP): up since" in r.stdout
                assert "delivered: 20 events; last: id 20" in r.stdout
                assert "next_from" in r.stdout
                data = json.loads(_cli(conn, "status", "--config", str(conn.config_path), "--json").stdout)
                (dest,) = data["destinations"]
                assert dest["state"] == "up" and dest["depth"] == 0 and dest["last_event_id"] == 20
                assert data["data_dir"] == str(data_dir) and data["running_pid"] == conn.pid
            finally:
                assert conn.terminate() == 0
    finally:
        sink.close()
    # stopped: from another directory the relative data_dir cannot be found; status says where it looked
    r = _cli(conn, "status", "--config", str(conn.config_path), cwd=elsewhere)
    assert r.returncode == 1
    assert f"error: no queue database yet at {elsewhere.absolute() / 'data' / 'queue.db'}" in r.stdout
    assert "is relative" in r.stdout and "--data-dir" in r.stdout
    r = _cli(conn, "status", "--config", str(conn.config_path), "--data-dir", str(data_dir), cwd=elsewhere)
    assert r.returncode == 0 and "service: not running" in r.stdout and "delivered: 20 events" in r.stdout


def test_sighup_reload_applies_the_new_config_without_loss_or_duplicates(tmp_path: Path) -> None:
    a, b = CountingSink(), CountingSink()
    try:
        with FakeRux(seed_detections=30, client_id=CLIENT_ID, client_secret=SECRET) as fake:
            conn = Connector(tmp_path, fake.url, servers=[a.entry("A")], schedule="*/2 * * * * *")
            conn.start()
            try:
                conn.wait_log("siemconn_started")
                wait_until(lambda: len(a.lines()) >= 30, 30, "A has the first 30 events")
                seeded = set(expected_payloads(fake))
                pre = {("detections", i) for i in fake.append("detections", 10)}
                pre |= {("audit", i) for i in fake.append("audit", 5)}
                time.sleep(0.5)  # some of these may be in flight when the HUP arrives
                cfg = json.loads(conn.config_path.read_text())
                c = cfg["configuration"]
                c["server"] = [a.entry("A", format="rfc5424"), b.entry("B")]
                c["scheduler"] = {
                    "audit": "* * * * * *",
                    "detections": "* * * * * *",
                    "entity_scoring": "off",
                }
                c["log_dir"] = str(tmp_path / "other-logs")  # cannot change live: logged, kept
                conn.config_path.write_text(json.dumps(cfg))
                conn.signal(signal.SIGHUP)
                conn.wait_log("reload_done")
                assert conn.alive()
                (done,) = _records(conn, "reload_done")
                assert done["servers_added"] == ["B"] and done["servers_removed"] == []
                assert done["streams_off"] == ["entity_scoring", "health", "lockdown"]
                (restart,) = _records(conn, "reload_needs_restart")
                assert list(restart["options"]) == ["log_dir"]
                after = set()
                after |= {("detections", i) for i in fake.append("detections", 10)}
                after |= {("audit", i) for i in fake.append("audit", 5)}
                expected = expected_payloads(fake)
                wait_until(lambda: set(received(a.lines())[0]) >= set(expected), 40, "A has every event")
                wait_until(lambda: set(received(b.lines())[0]) >= after, 40, "B has the new events")

                # an invalid config: every error logged, the running one keeps going
                bad = json.loads(conn.config_path.read_text())
                bad["configuration"]["server"][1]["server_port"] = 70000
                bad["configuration"]["scheduler"]["audit"] = "61 * * * *"
                bad["configuration"]["fromat"] = "x"
                conn.config_path.write_text(json.dumps(bad))
                conn.signal(signal.SIGHUP)
                conn.wait_log("reload_failed")
                (failed,) = _records(conn, "reload_failed")
                errors = " | ".join(failed["errors"])
                assert (
                    "server[1].server_port" in errors and "scheduler.audit" in errors and "fromat" in errors
                )
                assert conn.alive()
                later = {("detections", i) for i in fake.append("detections", 7)}
                wait_until(lambda: set(received(a.lines())[0]) >= later, 40, "A still served")
                wait_until(lambda: set(received(b.lines())[0]) >= later, 40, "B still served")
                expected = expected_payloads(fake)
            finally:
                assert conn.terminate() == 0
        counts_a, _ = received(a.lines())
        assert summary(expected, counts_a) == {
            "expected": len(expected),
            "received": len(expected),
            "missing": 0,
            "duplicated": 0,
            "unexpected": 0,
        }
        counts_b, _ = received(b.lines())
        # B starts from the reload: what was committed after it, never the backlog delivered before
        assert after | later <= set(counts_b) <= pre | after | later
        assert not set(counts_b) & seeded
        assert all(n == 1 for n in counts_b.values())
        # A's format changed at the reload: its last lines are RFC 5424
        assert a.lines()[-1].startswith("<14>1 ")
        assert a.lines()[0].startswith("<14>") and " VECTRA-SYSLOG-CONNECTOR: " in a.lines()[0]
        assert "Traceback" not in conn.output()
    finally:
        a.close()
        b.close()


def test_replay_resends_exactly_the_window_to_one_server_while_running(tmp_path: Path) -> None:
    a, b = CountingSink(), CountingSink()
    try:
        with FakeRux(client_id=CLIENT_ID, client_secret=SECRET) as fake:
            conn = Connector(
                tmp_path,
                fake.url,
                servers=[a.entry("A"), b.entry("B")],
                retain_hours=2,
                schedule="* * * * * *",
            )
            conn.start()
            try:
                conn.wait_log("siemconn_started")
                base = float(int(time.time()) - 3600)  # event times one minute apart, an hour ago
                stamps = [base + i * 60 for i in range(30)]
                det = fake.append("detections", 30, timestamps=stamps)
                aud = fake.append("audit", 30, timestamps=stamps)
                wait_until(lambda: len(a.lines()) >= 60 and len(b.lines()) >= 60, 40, "both have 60 events")

                def iso(t: float) -> str:
                    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

                since, until = iso(stamps[5]), iso(stamps[17])  # the 6th..17th events

                # refusals say exactly why
                r = _cli(conn, "replay", "--config", str(conn.config_path), "--server", "C", "--since", since)
                assert (
                    r.returncode == 1 and "server 'C' is not in the configuration; servers: A, B" in r.stderr
                )
                r = _cli(
                    conn, "replay", "--config", str(conn.config_path), "--server", "A", "--since", "yesterday"
                )
                assert r.returncode == 1 and "is not a time" in r.stderr
                off = json.loads(conn.config_path.read_text())
                off["configuration"]["retain_hours"] = 0
                (tmp_path / "off.json").write_text(json.dumps(off))
                r = _cli(
                    conn, "replay", "--config", str(tmp_path / "off.json"), "--server", "A", "--since", since
                )
                assert r.returncode == 1 and "retain_hours is 0" in r.stderr

                r = _cli(
                    conn,
                    "replay",
                    "--config",
                    str(conn.config_path),
                    "--server",
                    "A",
                    "--since",
                    since,
                    "--until",
                    until,
                    "--stream",
                    "detections",
                )
                assert r.returncode == 0, r.stderr
                assert "replay #1 requested: server A, stream detections" in r.stdout
                conn.wait_log("replay_done", timeout=30)
                (done,) = _records(conn, "replay_done")
                assert done["events"] == 12
                status = _cli(conn, "status", "--config", str(conn.config_path)).stdout
                assert "#1 A stream detections" in status and "done, 12 events" in status
                time.sleep(1.0)  # nothing more arrives
            finally:
                assert conn.terminate() == 0
        counts_a: Counter[tuple[str, int]] = received(a.lines())[0]
        counts_b: Counter[tuple[str, int]] = received(b.lines())[0]
        window = {("detections", i) for i in det[5:17]}
        assert {k for k, n in counts_a.items() if n == 2} == window
        assert all(n == 1 for k, n in counts_a.items() if k not in window)
        assert set(counts_a) == {("detections", i) for i in det} | {("audit", i) for i in aud}
        assert set(counts_b) == set(counts_a) and all(n == 1 for n in counts_b.values())
    finally:
        a.close()
        b.close()
