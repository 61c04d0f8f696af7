"""SIGHUP keeps what did not change (issue 28, items 7 and 10): the token, the connections of unchanged
servers, and no gauge of a removed server. The service as a subprocess, the fake RUX tenant, real TCP
listeners that count their connections."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from support.e2e import Connector, expected_payloads, received, start_fake, summary
from support.reliability import figure, log_events, wait_for
from support.sinks import CountingSink

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text: str = r.read().decode()
        return text


def test_sighup_burst_keeps_the_token_and_unchanged_connections(tmp_path: Path) -> None:
    """20 SIGHUPs in 2 s with an unchanged config: no token request and no reconnect. Then a reload that
    changes server B's settings reconnects B only, and one that removes B removes B's gauges. Every
    event arrives exactly once at A."""
    a, b = CountingSink(), CountingSink()
    fake = start_fake(seed_detections=30)
    mport = _free_port()
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [a.entry("A"), b.entry("B")],
        schedule="* * * * * *",
        metrics_address=f"127.0.0.1:{mport}",
    )
    conn.start()
    try:
        want = set(expected_payloads(fake))
        wait_for(
            lambda: want <= set(received(a.lines())[0]) and want <= set(received(b.lines())[0]), 40, "seeded"
        )
        tokens = fake.count_requests("/oauth2/token")
        conns = (a.connections, b.connections)
        assert tokens == 1 and conns == (1, 1), (tokens, conns)
        for _ in range(20):
            conn.signal(signal.SIGHUP)
            time.sleep(0.1)
        wait_for(lambda: len(log_events(conn, "reload_requested")) == 20, 20, "20 reload requests")
        _wait_reloads_settled(conn)
        fake.append("detections", 10)
        wait_for(lambda: set(expected_payloads(fake)) <= set(received(a.lines())[0]), 30, "A after the burst")
        wait_for(lambda: set(expected_payloads(fake)) <= set(received(b.lines())[0]), 30, "B after the burst")
        assert fake.count_requests("/oauth2/token") == 1
        assert (a.connections, b.connections) == (1, 1)
        done = log_events(conn, "reload_done")
        assert all(
            d["token_kept"] and d["api_client_kept"] and d["connections_kept"] == ["A", "B"] for d in done
        ), done
        bursts = len(done)

        cfg = json.loads(conn.config_path.read_text())
        cfg["configuration"]["server"] = [a.entry("A"), b.entry("B", format="rfc5424")]
        conn.config_path.write_text(json.dumps(cfg))
        conn.signal(signal.SIGHUP)
        wait_for(
            lambda: any(d["connections_kept"] == ["A"] for d in log_events(conn, "reload_done")),
            30,
            "B changed",
        )
        fake.append("detections", 10)
        wait_for(
            lambda: set(expected_payloads(fake)) <= set(received(a.lines())[0]), 30, "A after B's change"
        )
        wait_for(lambda: any(x.startswith("<14>1 ") for x in b.lines()), 30, "B in RFC 5424")
        assert log_events(conn, "reload_done")[-1]["connections_kept"] == ["A"]
        assert (a.connections, b.connections) == (1, 2)
        assert 'siemconn_server_up{server="B"} 1.0' in _metrics(mport)

        cfg["configuration"]["server"] = [a.entry("A")]
        conn.config_path.write_text(json.dumps(cfg))
        conn.signal(signal.SIGHUP)
        wait_for(
            lambda: any(d["servers_removed"] == ["B"] for d in log_events(conn, "reload_done")),
            30,
            "B removed",
        )
        metrics = _metrics(mport)
        assert 'siemconn_server_up{server="A"} 1.0' in metrics
        assert 'server="B"' not in "\n".join(
            line
            for line in metrics.splitlines()
            if line.startswith(("siemconn_server_up", "siemconn_queue_depth", "siemconn_oldest_undelivered"))
        ), metrics
        assert fake.count_requests("/oauth2/token") == 1 and a.connections == 1
        expected = expected_payloads(fake)
        wait_for(lambda: set(expected) <= set(received(a.lines())[0]), 30, "A has every event")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
        a.close()
        b.close()
    s = summary(expected, received(a.lines())[0])
    figure("sighup_burst", {**s, "reloads_done": bursts, "token_requests": 1, "a_connections": a.connections})
    assert s["missing"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s


def _wait_reloads_settled(conn: Connector) -> None:
    """Until no reload is pending and none finished for a second (SIGHUPs during a reload coalesce)."""
    deadline = time.monotonic() + 60
    seen = -1
    while time.monotonic() < deadline:
        n = len(log_events(conn, "reload_done"))
        if n >= 1 and n == seen and not _reloading(conn):
            return
        seen = n
        time.sleep(1.0)
    raise AssertionError("the reloads did not settle within 60 s")


def _reloading(conn: Connector) -> bool:
    """A reload was requested after the last one that finished (SIGHUPs during a reload coalesce)."""
    recs = [r["event"] for r in conn.log_records() if r.get("event") in ("reload_requested", "reload_done")]
    return bool(recs) and recs[-1] == "reload_requested"
