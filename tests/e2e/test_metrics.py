"""The metrics and health endpoint of the running service (`metrics_address`), end to end: siemconn as a
subprocess against the fake tenant and real rsyslogd; delivered and sent counters, /healthz going 503 while
a server is down and 200 when it is back. The endpoint itself is tests/unit/ops/test_endpoint.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.e2e import Connector, expected_payloads, received, serve_fake, wait_until
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=10, seed_detections=60, seed_entity=20)


def _metric(text: str, name: str, server: str) -> float:
    m = re.search(rf'^{name}\{{server="{server}"\}} (\S+)$', text, re.M)
    assert m, f"{name}{{server={server}}} not in metrics"
    return float(m.group(1))


def test_metrics_count_deliveries_and_healthz_flips(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    mport = free_port()
    late = RsyslogReceiver(tmp_path / "late")  # configured now, started later: its port refuses until then
    down_port = late.tcp_port
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [
            rsyslog.server_entry("tcp1", "TCP"),
            {"name": "late", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": down_port},
        ],
        metrics_address=f"127.0.0.1:{mport}",
        health_window_seconds=2,
        max_backoff_seconds=1,
    ).start()
    base = f"http://127.0.0.1:{mport}"
    try:
        want = set(expected_payloads(fake))
        wait_until(lambda: want <= set(received(rsyslog.raw_lines())[0]), 40, "delivery to tcp1")

        def scrape() -> str:
            return httpx.get(f"{base}/metrics", timeout=5).text

        wait_until(
            lambda: _metric(scrape(), "siemconn_events_delivered_total", "tcp1") == len(want),
            20,
            "delivered counter",
        )
        assert _metric(scrape(), "siemconn_events_delivered_total", "tcp1") == len(rsyslog.raw_lines())
        # the 'late' server refuses connections: past the 2 s window /healthz says 503 and why
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 503, 30, "healthz 503")
        body = httpx.get(f"{base}/healthz", timeout=5).json()
        assert any("late" in p for p in body["problems"]), body
        # a receiver appears on that port: the backlog drains and /healthz is 200 again
        late.start()
        try:
            wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, 30, "healthz 200")
            wait_until(lambda: want <= set(received(late.raw_lines())[0]), 40, "late server catches up")
            assert _metric(scrape(), "siemconn_events_delivered_total", "late") >= len(want)
        finally:
            assert conn.terminate() == 0
            late.stop()
    finally:
        conn.kill()


def test_udp_events_are_counted_as_sent_not_delivered(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    mport = free_port()
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("u", "UDP")], metrics_address=f"127.0.0.1:{mport}"
    ).start()
    try:
        want = set(expected_payloads(fake))
        wait_until(lambda: want <= set(received(rsyslog.raw_lines())[0]), 40, "delivery to u")

        def scrape() -> str:
            return httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text

        wait_until(lambda: _metric(scrape(), "siemconn_events_sent_total", "u") == len(want), 20, "sent")
        assert not re.search(r'^siemconn_events_delivered_total\{server="u"\}', scrape(), re.M)
    finally:
        assert conn.terminate() == 0
        conn.kill()
