"""Security: no secret or token in any output, TLS verified by default end to end, private directories,
local-only listeners by default; plus the bad-input cases the formatter property tests do not reach."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.certs import TlsFiles, make_ca_and_leaf, make_certs
from support.e2e import Connector, expected_payloads, serve_fake
from support.reliability import assert_no_secrets, figure, log_events, wait_for
from support.rsyslog import RsyslogReceiver

from siemconn.config import Configuration
from siemconn.devtools import fake_rux
from siemconn.devtools.fake_rux import FakeRux
from siemconn.syslog.format import fit_datagram, format_message

EVERY_SECOND = "* * * * * *"


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_detections=40, token_expires_in=4)


def _tls_files_with(directory: Path, ca: Path, cert: Path, key: Path) -> TlsFiles:
    base = make_certs(directory / "base")  # client files and other-ca are unused (server-only TLS port)
    return TlsFiles(directory, ca, cert, key, base.client_cert, base.client_key, base.other_ca)


@pytest.mark.e2e
def test_tls_refuses_bad_servers_and_delivers_nothing(
    tmp_path: Path, fake: FakeRux, rsyslog_factory: Any
) -> None:
    """Wrong hostname, unknown CA, expired certificate: TLS verification is on by default (no option set),
    the service logs a clear error naming the server and the fix, keeps running, and sends those servers
    nothing, while a correctly configured TLS server gets everything."""
    ca, cert, key = make_ca_and_leaf(tmp_path / "wrong", "wrong", "wrong.example")
    wrong = rsyslog_factory(certs=_tls_files_with(tmp_path / "wrong", ca, cert, key))
    ca2, cert2, key2 = make_ca_and_leaf(tmp_path / "old", "old", "127.0.0.1", expired=True)
    expired = rsyslog_factory(certs=_tls_files_with(tmp_path / "old", ca2, cert2, key2))
    good = rsyslog_factory()
    servers = [
        wrong.server_entry("wronghost", "TLS", mutual=False),
        expired.server_entry("expired", "TLS", mutual=False),
        {**good.server_entry("unknownca", "TLS", mutual=False), "tls_ca_file": str(good.certs.other_ca)},
        good.server_entry("good", "TLS", mutual=False),
    ]
    conn = Connector(tmp_path / "c", fake.url, servers, schedule=EVERY_SECOND, max_backoff_seconds=1).start()
    try:
        want = set(expected_payloads(fake))
        wait_for(lambda: len(good.raw_lines()) >= len(want), 40, "the good server's events")
        wait_for(
            lambda: (
                sum(1 for r in log_events(conn, "syslog_server_lost") if "TLS" in r.get("server", "")) >= 3
            ),
            30,
            "three TLS refusals",
        )
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
    reasons = {r["server"].split(" ")[0]: r["reason"] for r in log_events(conn, "syslog_server_lost")}
    figure("tls_refusals", reasons)
    assert "mismatch" in reasons["wronghost"] and "tls_verify_hostname" in reasons["wronghost"]
    assert "expired" in reasons["expired"]
    assert "not signed by a CA" in reasons["unknownca"]
    assert wrong.raw_lines() == [] and expired.raw_lines() == []
    assert len(good.raw_lines()) == len(want)
    assert "good" not in reasons


@pytest.mark.e2e
def test_no_secret_or_token_in_any_output(tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver) -> None:
    """DEBUG logging, tokens renewed every few seconds, a refresh rejected, a credentials error at startup,
    `check`, `status` and `send-test`: neither the client secret nor any token the tenant issued shows up."""
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP"), rsyslog.server_entry("tls1", "TLS")],
        schedule=EVERY_SECOND,
        log_level="DEBUG",
    ).start()
    extra = []
    try:
        wait_for(lambda: len(rsyslog.raw_lines()) >= 80, 40, "the seeded events")
        fake.configure(reject_refresh=400)
        fake.expire_tokens()
        fake.append("detections", 10)
        wait_for(lambda: len(rsyslog.raw_lines()) >= 100, 40, "events after a rejected refresh")
        for cmd in ("status", "check", "send-test"):
            extra.append(_cli(conn, cmd))
        assert conn.terminate() == 0
    finally:
        conn.kill()
    # wrong secret at startup: the error is clear and does not echo what was sent
    bad = Connector(tmp_path / "bad", fake.url, [rsyslog.server_entry("tcp1", "TCP")])
    bad.env["CLIENT_SECRET"] = "Wrong-Secret-Value-Also-Never-Logged"
    bad.start()
    assert bad.wait(30) == 2
    assert log_events(bad, "startup_credentials_rejected")
    assert "Wrong-Secret-Value-Also-Never-Logged" not in bad.all_logs_text()
    text = "\n".join(extra) + "\n" + "\n".join(rsyslog.raw_lines())
    n = assert_no_secrets(conn, fake, text)
    log_files = sorted(p.name for p in (conn.workdir / "logs").iterdir())
    figure("secret_scan", {"tokens_checked": n, "log_files": log_files, "outputs": 3 + len(extra)})
    assert log_files  # the daily file log exists and was scanned


def _cli(conn: Connector, cmd: str) -> str:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "siemconn", cmd, "--config", str(conn.config_path)],
        cwd=conn.workdir,
        env=conn.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.stdout + r.stderr


@pytest.mark.e2e
def test_private_directories(tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver) -> None:
    """data_dir is created 0700 (and tightened if it exists with wider permissions), log_dir 0750."""
    pre = tmp_path / "c" / "data"
    pre.mkdir(parents=True)
    pre.chmod(0o777)
    conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")]).start()
    try:
        conn.wait_log("siemconn_started", timeout=30)
        assert conn.terminate() == 0
    finally:
        conn.kill()
    data, logs = conn.workdir / "data", conn.workdir / "logs"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(logs.stat().st_mode) == 0o750
    # the queue and its lock are 0600 (the heartbeat file holds only a time and a health verdict; it is 0644
    # inside the 0700 directory, so nobody else can reach it either)
    for f in data.glob("queue.*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_local_listeners_by_default() -> None:
    """The fake tenant (class and CLI) binds 127.0.0.1; the metrics endpoint is off unless configured."""
    assert Configuration.model_fields["metrics_address"].default is None
    with FakeRux() as f:
        assert f.host == "127.0.0.1" and f.bound_host == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", f.port), timeout=5):
            pass
    parser_defaults = _fake_cli_defaults()
    assert parser_defaults["host"] == "127.0.0.1"


def _fake_cli_defaults() -> dict[str, Any]:
    import argparse

    captured: dict[str, Any] = {}

    class Stop(Exception):
        pass

    real = argparse.ArgumentParser.parse_args

    def grab(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        captured.update(vars(real(self, [], namespace)))
        raise Stop

    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]  # capture what main() parses
    try:
        with pytest.raises(Stop):
            fake_rux.main([])
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]  # undo the capture
    return captured


# --- bad input the formatter property tests (tests/unit/syslog/test_format.py) do not reach: 1 MB strings ---------------


def _server(**kw: Any) -> Any:
    from siemconn.config import ServerConfig

    base = {"name": "s", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 514}
    return ServerConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("fmt", ["legacy", "rfc5424", "rfc3164"])
def test_one_megabyte_strings_unicode_and_control_characters(fmt: str) -> None:
    big = ('\u00e9\u4e2d\U0001f600\x00\x1b\n\r\t"\\' * 110_000)[:1_048_576]
    event = {"id": 7, "big": big, "deep": [[[[{"k": big[:1000]}]]]]}
    payload = json.dumps(event)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    msg = format_message(payload, "audit", _server(format=fmt, hostname="h"), now)
    assert b"\n" not in msg and b"\r" not in msg and b"\x00" not in msg
    assert json.loads(msg[msg.index(b"{") :]) == event
    udp = _server(format=fmt, hostname="h", server_protocol="UDP")
    fitted = fit_datagram(msg, udp)
    assert fitted is not None and len(fitted) <= 65507  # truncated, counted and logged by the writer
    assert fit_datagram(msg, _server(format=fmt, server_protocol="UDP", udp_oversize="drop")) is None
