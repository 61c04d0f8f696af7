"""Operator commands and the metrics/health endpoint, against the fake tenant and a real rsyslogd."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.e2e import (
    CLIENT_ID,
    SECRET,
    Connector,
    connector_config,
    expected_payloads,
    received,
    serve_fake,
    wait_until,
)
from support.rsyslog import RelpReceiver, RsyslogReceiver

from siemconn import __version__
from siemconn.cli import main
from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=10, seed_detections=60, seed_entity=20)


class Cli:
    """siemconn's CLI run in-process on a config.json in tmp_path for the fake tenant, whose credentials
    are in the environment (as an operator would set them)."""

    def __init__(
        self, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self._tmp_path = tmp_path
        self._url = url
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def config(self, servers: list[dict[str, Any]]) -> str:
        """Write config.json with `servers`, set the credentials, and return its path."""
        self._monkeypatch.setenv("BASE_URL", self._url)
        self._monkeypatch.setenv("CLIENT_ID", CLIENT_ID)
        self._monkeypatch.setenv("CLIENT_SECRET", SECRET)
        p = self._tmp_path / "config.json"
        p.write_text(json.dumps(connector_config(self._tmp_path, servers)))
        return str(p)

    def run(self, *args: str) -> tuple[int, str]:
        """`siemconn ARGS`: its exit code and what it printed."""
        rc = main(list(args))
        return rc, self._capsys.readouterr().out


@pytest.fixture
def cli(
    tmp_path: Path, fake: FakeRux, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    return Cli(tmp_path, fake.url, monkeypatch, capsys)


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "siemconn", "--version"], capture_output=True, text=True, check=True
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if head.returncode != 0:  # not a git checkout (an unpacked sdist): the commit is unknown
        assert out.stdout.strip() == f"siemconn {__version__} (commit unknown)"
    else:  # an editable install asks the checkout it runs from
        assert re.fullmatch(
            rf"siemconn {re.escape(__version__)} \(commit {head.stdout.strip()}(-dirty)?\)",
            out.stdout.strip(),
        )


def test_check_all_ok(tmp_path: Path, cli: Cli, rsyslog: RsyslogReceiver) -> None:
    servers = [
        rsyslog.server_entry("t", "TCP"),
        rsyslog.server_entry("s", "TLS"),
        rsyslog.server_entry("u", "UDP"),
        rsyslog.server_entry("b", "TCP", max_message_size=8000, oversize="trim"),
    ]
    rc, out = cli.run("check", "--config", cli.config(servers))
    assert rc == 0, out
    # one hint line for each TCP, TLS or RELP server without a size budget, naming the receivers' limits
    hints = [line.split(":")[0].strip() for line in out.splitlines() if "hint: no max_message_size" in line]
    assert hints == ["t", "s"]
    assert "rsyslog imtcp and imrelp: 8096 bytes by default" in out
    assert "ok     Vectra API: token obtained" in out
    assert f"ok     data directory: {tmp_path / 'data'} will be created (0700) at the first run" in out
    assert re.search(r"ok     syslog server t \(TCP 127\.0\.0\.1:\d+\): TCP connection opened", out)
    assert re.search(r"ok     syslog server s \(TLS 127\.0\.0\.1:\d+\): TLS handshake completed", out)
    assert re.search(r"ok     syslog server u \(UDP 127\.0\.0\.1:\d+\): resolved", out)
    assert rsyslog.raw_lines() == []  # check sends nothing
    assert SECRET not in out


def test_check_reports_each_failure(cli: Cli, fake: FakeRux, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port()
    servers = [{"name": "gone", "server_protocol": "tcp", "server_host": "127.0.0.1", "server_port": closed}]
    cfg = cli.config(servers)
    monkeypatch.setenv("CLIENT_SECRET", "wrong-" + SECRET)
    rc, out = cli.run("check", "--config", cfg)
    assert rc == 1
    assert "FAILED Vectra API: client id or secret rejected by " + fake.url in out
    assert (
        f"FAILED syslog server gone (TCP 127.0.0.1:{closed}): connection refused; is the syslog server listening on that TCP port?"
        in out
    )
    assert SECRET not in out


def test_send_test_tcp_and_tls(cli: Cli, rsyslog: RsyslogReceiver) -> None:
    servers = [rsyslog.server_entry("t", "TCP"), rsyslog.server_entry("s", "TLS", format="rfc5424")]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 0, out
    assert out.count("ok     send-test") == 2
    fields = rsyslog.wait_fields(2)
    assert {f.proto for f in fields} == {"tcp", "tls"}
    assert all("SIEMCONN-TEST-MESSAGE" in f.msg for f in fields)
    tls = next(f for f in fields if f.proto == "tls")
    assert tls.app == "siemconn" and tls.msgid == "audit"


def test_send_test_closed_port_fails_clearly(cli: Cli) -> None:
    closed = free_port()
    servers = [{"name": "gone", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": closed}]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 1
    assert (
        f"FAILED send-test gone (TCP 127.0.0.1:{closed}): connection refused; is the syslog server listening on that TCP port?"
        in out
    )


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


def test_check_reports_a_damaged_queue_file(tmp_path: Path, cli: Cli) -> None:
    servers = [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 514}]
    cfg = cli.config(servers)
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "data" / "queue.db").write_bytes(b"this is not a database" * 100)
    rc, out = cli.run("check", "--config", cfg)
    assert rc == 1
    assert re.search(
        r"FAILED data directory: queue database .*queue\.db is corrupt or not a siemconn queue", out
    ), out
    assert (tmp_path / "data" / "queue.db").read_bytes() == b"this is not a database" * 100


def test_check_and_send_test_relp_and_the_udp_note(
    cli: Cli, relp_receiver: RelpReceiver, rsyslog: RsyslogReceiver
) -> None:
    servers = [
        relp_receiver.server_entry("r", "RELP"),
        relp_receiver.server_entry("rt", "RELP-TLS"),
        rsyslog.server_entry("u", "UDP"),
    ]
    cfg = cli.config(servers)
    rc, out = cli.run("check", "--config", cfg)
    assert rc == 0
    assert re.search(
        r"ok     syslog server r \(RELP 127\.0\.0\.1:\d+\): RELP session opened; receives ", out
    ), out
    assert re.search(
        r"ok     syslog server rt \(RELP\+TLS 127\.0\.0\.1:\d+\): RELP session opened over TLS", out
    )
    assert out.count("u: note: UDP has no acknowledgement") == 1
    assert relp_receiver.raw_lines() == []
    rc, out = cli.run("send-test", "--config", cfg)
    assert rc == 0
    assert out.count("and acknowledged (rsp 200)") == 2, out
    assert out.count("u: note: UDP has no acknowledgement") == 1
    # acknowledged means stored: the lines are there as soon as send-test returned
    assert len(relp_receiver.raw_lines()) == 2
    assert all("SIEMCONN-TEST-MESSAGE" in line for line in relp_receiver.raw_lines())
    rc, out = cli.run("status", "--config", cfg)
    assert rc == 0
    assert "UDP destinations (u): 'undelivered' means not yet sent" in out


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


def test_send_test_in_cef_and_leef(cli: Cli, rsyslog: RsyslogReceiver) -> None:
    from support import cefparse, leefparse

    servers = [
        rsyslog.server_entry("c", "TCP", format="cef", hostname="conn-1"),
        rsyslog.server_entry("l", "UDP", format="leef", hostname="conn-1"),
    ]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 0, out
    assert "(cef); search your SIEM" in out and "(leef); search your SIEM" in out
    lines = rsyslog.wait_for(2)
    c = cefparse.parse_syslog(next(ln for ln in lines if " CEF:" in ln).encode()).cef
    assert (c.vendor, c.product, c.signature, c.name) == (
        "Vectra AI",
        "siemconn",
        "siemconn.send_test",
        "siemconn send-test",
    )
    assert (
        "SIEMCONN-TEST-MESSAGE" in c.extension["msg"] and "SIEMCONN-TEST-MESSAGE" in c.labelled()["rawEvent"]
    )
    lf = leefparse.parse_syslog(next(ln for ln in lines if " LEEF:" in ln).encode()).leef
    assert (lf.product, lf.event_id, lf.delimiter) == ("siemconn", "siemconn.send_test", "\t")
    assert "SIEMCONN-TEST-MESSAGE" in lf.attributes["msg"]
