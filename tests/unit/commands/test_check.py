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
from support.e2e import CLIENT_ID, SECRET, connector_config, serve_fake
from support.rsyslog import RelpReceiver, RsyslogReceiver

from siemconn.cli import main
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


@pytest.fixture
def lockdown_fake() -> Iterator[FakeRux]:
    """A tenant with two entities in lockdown, for the streams check probes one by one."""
    yield from serve_fake(seed_audit=5, seed_detections=7, seed_lockdown=2)


def test_check_tries_every_enabled_stream_and_names_the_role(
    tmp_path: Path,
    lockdown_fake: FakeRux,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in {"BASE_URL": lockdown_fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET}.items():
        monkeypatch.setenv(k, v)
    p = tmp_path / "config.json"
    sched = {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": None, "lockdown": "* * * * *"}
    doc = connector_config(
        tmp_path, [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}]
    )
    doc["configuration"]["scheduler"] = sched
    p.write_text(json.dumps(doc))
    assert main(["check", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "ok     stream audit: HTTP 200, 1 event (limit=1)" in out
    assert "ok     stream detections: HTTP 200, 1 event (limit=1)" in out
    assert "ok     stream lockdown: HTTP 200, 2 entities in lockdown" in out
    assert "ok     stream entity_scoring: off (not polled)" in out
    assert "ok     stream health: off (not polled)" in out
    assert not any(r.path.endswith("entity_scoring") for r in lockdown_fake.requests)
    lockdown_fake.configure(roles=["Read-Only"])  # no Auditor: audit fails, the others pass
    assert main(["check", "--config", str(p)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAILED stream audit: HTTP 403: the API client lacks the Auditor role; add it in the Vectra UI" in out
    )
    assert '"scheduler": {"audit": null}' in out
    assert "ok     stream detections" in out and "ok     stream lockdown" in out
    lockdown_fake.configure(roles=["Auditor"])
    assert main(["check", "--config", str(p)]) == 1
    out = capsys.readouterr().out
    assert "FAILED stream detections: HTTP 403: the API client lacks the Read-Only role" in out
    assert "FAILED stream lockdown: HTTP 403: the API client lacks the Read-Only role" in out
    assert "ok     stream audit" in out
    assert main(["status", "--config", str(p)]) == 0
    assert "streams off: entity_scoring, health" in capsys.readouterr().out


def test_check_under_v35_names_each_endpoint_that_answered(
    tmp_path: Path,
    lockdown_fake: FakeRux,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """api_version v3.5: detections answer at v3.5 with the size asked for, every other enabled stream
    at v3.4; each check line names its endpoint."""
    for k, v in {"BASE_URL": lockdown_fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET}.items():
        monkeypatch.setenv(k, v)
    p = tmp_path / "config.json"
    sched = {s: "* * * * *" for s in ("audit", "detections", "entity_scoring", "health", "lockdown")}
    doc = connector_config(
        tmp_path,
        [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}],
        api_version="v3.5",
        detection_size="detailed",
    )
    doc["configuration"]["scheduler"] = sched
    p.write_text(json.dumps(doc))
    assert main(["check", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    det = "/api/v3.5/events/detections, 1 event (limit=1, ordering=id, size=detailed)"
    assert f"ok     stream detections: HTTP 200 from {det}" in out
    assert "ok     stream audit: HTTP 200 from /api/v3.4/events/audits, 1 event (limit=1)" in out
    for t in ("account", "host"):
        assert f"ok     stream entity_scoring.{t}: HTTP 200 from /api/v3.4/events/entity_scoring" in out
    assert "ok     stream lockdown: HTTP 200 from /api/v3.4/lockdown, 2 entities in lockdown" in out
    assert "ok     stream health: HTTP 200 from /api/v3.4/health, health object" in out
    asked = [r for r in lockdown_fake.requests if r.path == "/api/v3.5/events/detections"]
    assert asked and asked[-1].params["size"] == "detailed" and asked[-1].params["ordering"] == "id"
