"""`siemconn check` (siemconn.commands.check), in-process against the fake tenant and real receivers: every
problem answered in one line (API, data directory, each syslog server, each stream), nothing sent."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import Cli
from support.e2e import SECRET, connector_config
from support.rsyslog import RelpReceiver, RsyslogReceiver

from siemconn.commands import check
from siemconn.config import load_local_settings
from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port


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


@pytest.fixture
def silent_tcp_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a plain-TCP syslog receiver)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def _tls_check(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """check_server's answer for a TLS server at `port` (silence is the answer a plain-TCP port gives, so
    the test waits 0.5 s for it instead of the 5 s a real check gives a distant server)."""
    monkeypatch.setattr(check, "TLS_ANSWER_TIMEOUT", 0.5)
    servers = [{"name": "s", "server_protocol": "TLS", "server_host": "127.0.0.1", "server_port": port}]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(connector_config(tmp_path, servers)))
    settings = load_local_settings(cfg)
    ok, detail = asyncio.run(check.check_server(settings.servers[0], settings))
    assert not ok
    return detail


def test_tls_to_a_silent_plain_tcp_port_says_no_tls(
    tmp_path: Path, silent_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    detail = _tls_check(tmp_path, silent_tcp_port, monkeypatch)
    assert "the peer did not speak TLS" in detail, detail
    assert "plain-TCP syslog port" in detail


def test_tls_to_rsyslog_plain_tcp_port_says_no_tls(
    tmp_path: Path, rsyslog: RsyslogReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    detail = _tls_check(tmp_path, rsyslog.tcp_port, monkeypatch)
    assert "the peer did not speak TLS" in detail, detail


def test_tls_to_a_closed_port_says_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port()
    detail = _tls_check(tmp_path, closed, monkeypatch)
    assert (
        detail == f"cannot connect to 127.0.0.1:{closed}: connection refused (nothing listens on that port)"
    )
