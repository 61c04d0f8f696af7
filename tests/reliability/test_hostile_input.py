"""Bad input, end to end: hostile API answers, pinned TLS trust, private files, a flooded metrics port.

Each test runs the real service (`python -m siemconn run` as a subprocess) against the fake tenant with
a hostile answer injected, and checks that nothing is lost, that the process keeps running, and what
the operator sees. The numbers in docs/reliability.md ("Bad input") come from these tests (run with -s).
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.certs import TlsFiles, make_ca_and_leaf, make_certs
from support.e2e import SECRET, Connector, expected_payloads, serve_fake
from support.reliability import delivered, figure, log_events, status_checkpoints, tally, wait_for
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux, Fault

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"
PULL_FAILED = "pull_failed"


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_detections=60, seed_audit=5, seed_entity=10)


def _vmhwm_mb(pid: int) -> float:
    """Peak resident set size of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _append_all(fake: FakeRux, n: int = 20) -> None:
    fake.append("detections", n)
    fake.append("audits", max(1, n // 4))
    fake.append("entity_scoring", max(1, n // 4))


def _cli(conn: Connector, cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siemconn", cmd, "--config", str(conn.config_path)],
        cwd=conn.workdir,
        env=env or conn.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- 3. bogus next_checkpoint ------------------------------------------------------------------------


def test_bogus_next_checkpoint_cannot_make_later_events_unreachable(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """One answer with next_checkpoint 9223372036854775797 (a real event in it): the stored checkpoint is
    that event's id + 1, a warning names both values, and every later event is delivered."""
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND
    ).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        fake.append("detections", 1)
        ev = fake.generated()["detections"][-1]  # the next real event, served by the fault
        body = {"events": [json.loads(ev.body("v3.3"))], "next_checkpoint": 9223372036854775797}
        fake.add_fault(Fault(path="detections", status=None, body=json.dumps({**body, "remaining_count": 0})))
        wait_for(lambda: bool(log_events(conn, "implausible_next_checkpoint")), 20, "the warning")
        _append_all(fake, 40)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the events after the bogus answer")
        checkpoint = status_checkpoints(conn)["detections"]
        assert conn.alive()
    finally:
        conn.terminate()
    warn = log_events(conn, "implausible_next_checkpoint")[0]
    assert warn["server"] == 9223372036854775797 and warn["kept"] == ev.id + 1
    assert checkpoint == fake.heads()["detections"]
    result = tally(rsyslog, fake, "tcp")
    figure("bad_input_bogus_checkpoint", {**result, "kept": warn["kept"], "server": warn["server"]})
    assert result["missing"] == 0


# --- 4. bounded memory per answer --------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["2m_tiny_events", "one_300mb_event"])
def test_a_huge_answer_never_takes_the_process_above_400mb(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, shape: str
) -> None:
    """A 31 MB page of 2,000,000 tiny events (the server ignores `limit`), or one 300 MB event: the client
    stops reading at max_response_mb (8), retries with a smaller limit down to 1, then reports
    api_answer_too_large naming max_response_mb; peak RSS stays below 400 MB; the other streams and,
    once the answer is sane again, this one deliver everything."""
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND
    ).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        head = fake.heads()["detections"] or 1
        if shape == "2m_tiny_events":
            events = ",".join(f'{{"id":{head + i}}}' for i in range(2_000_000))
            body = f'{{"events":[{events}],"next_checkpoint":{head + 2_000_000},"remaining_count":0}}'
            fault = Fault(path="detections", status=None, body=body, count=6)
        else:
            body = f'{{"events":[{{"id":{head},"blob":"@PAD@"}}],"next_checkpoint":{head + 1},"remaining_count":0}}'
            # no Content-Length: the cap is enforced while the body streams in
            fault = Fault(
                path="detections", status=None, body=body, pad=300 * 1024 * 1024, no_length=True, count=6
            )
        fake.add_fault(fault)
        wait_for(
            lambda: any(r.get("level") == "error" for r in log_events(conn, "api_answer_too_large")),
            90,
            "the operator-visible error",
        )
        assert conn.alive(), conn.output()[-2000:]
        peak = _vmhwm_mb(conn.pid)
        _append_all(fake, 30)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, "the events after the huge answers")
    finally:
        conn.terminate()
    tries = [r.get("limit") for r in log_events(conn, "api_answer_too_large")]
    failed = [r["error"] for r in log_events(conn, PULL_FAILED)]
    result = tally(rsyslog, fake, "tcp")
    figure(f"bad_input_huge_answer_{shape}", {**result, "peak_rss_mb": round(peak), "limits_tried": tries})
    assert peak < 400
    assert tries == [1000, 250, 62, 15, 3, 1]
    assert any("raise max_response_mb" in e for e in failed)
    assert result["missing"] == 0


# --- 5. http_timeout is a deadline for the whole request ---------------------------------------------


def test_dripped_page_and_dripped_token_block_nothing_beyond_http_timeout(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """A page body dripped at 1 byte/s, then a token renewal dripped at 1 byte/s while every stream needs
    a new token: each request is cut at http_timeout (2 s), retried, and all events arrive in seconds."""
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule=EVERY_SECOND,
        http_timeout=2,
    ).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        _append_all(fake, 40)
        fake.add_fault(Fault(path="detections", status=None, drip=1.0))
        t0 = time.monotonic()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 30, "the events behind a dripped page")
        page_s = time.monotonic() - t0
        fake.revoke_tokens(refresh=True)
        fake.add_fault(Fault(path="/oauth2/token", status=None, drip=1.0))
        _append_all(fake, 40)
        t0 = time.monotonic()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 30, "the events behind a dripped token")
        token_s = time.monotonic() - t0
        assert conn.alive()
    finally:
        conn.terminate()
    timeouts = [r for r in conn.log_records() if "within http_timeout" in json.dumps(r)]
    result = tally(rsyslog, fake, "tcp")
    figure(
        "bad_input_drip",
        {**result, "page_recovery_s": round(page_s, 1), "token_recovery_s": round(token_s, 1)},
    )
    assert timeouts, "the cut requests are logged"
    assert result["missing"] == 0


# --- 6. malformed token answers ----------------------------------------------------------------------

_DEEP = "[" * 100_000 + "]" * 100_000
BAD_TOKEN_BODIES = {
    "expires_in_10e400": '{"access_token": "aaaaaaaaaaaaaaaaaaaa", "expires_in": 1' + "0" * 400 + "}",
    "nested_100000": _DEEP,
    "expires_in_string": '{"access_token": "aaaaaaaaaaaaaaaaaaaa", "expires_in": "soon"}',
    "access_token_number": '{"access_token": 12345, "expires_in": 3600}',
    "not_json": "<html>maintenance</html>",
    "refresh_expires_in_negative": (
        '{"access_token": "aaaaaaaaaaaaaaaaaaaa", "refresh_token": "r", "refresh_expires_in": -1}'
    ),
}


def test_malformed_token_answers_are_api_errors_and_run_keeps_running(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """Six malformed token answers in a row, from startup on: each is an API error with a clear message,
    `run` keeps running and retries on schedule, then delivers everything; `check` prints one line."""
    conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    env = dict(conn.env)
    checks: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, body in BAD_TOKEN_BODIES.items():
        fake.add_fault(Fault(path="/oauth2/token", status=None, body=body))
        checks[name] = _cli(conn, "check", env)
    for body in BAD_TOKEN_BODIES.values():
        fake.add_fault(Fault(path="/oauth2/token", status=None, body=body))
    conn.start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, "the events after the bad token answers")
        assert conn.alive(), conn.output()[-3000:]
    finally:
        conn.terminate()
    out = conn.output()
    assert "siemconn_crashed" not in out and "Traceback" not in out
    errors = [r.get("error", "") for r in conn.log_records() if "token endpoint" in r.get("error", "")]
    assert len(errors) >= len(BAD_TOKEN_BODIES), errors
    for name, r in checks.items():
        api = [line for line in r.stdout.splitlines() if "Vectra API" in line]
        assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, (name, r.stdout, r.stderr)
        assert len(api) == 1 and api[0].startswith("FAILED") and "token endpoint" in api[0], (name, api)
    result = tally(rsyslog, fake, "tcp")
    figure("bad_input_token_answers", {**result, "answers": len(BAD_TOKEN_BODIES), "errors": len(errors)})
    assert result["missing"] == 0


# --- 7. plain http BASE_URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://tenant.example.com", "http://192.0.2.10:8080", "http://[2001:db8::1]"]
)
def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path, rsyslog: RsyslogReceiver, url: str) -> None:
    """The client secret would travel in clear (HTTP Basic): exit 2 with a message naming https."""
    conn = Connector(tmp_path / "c", url, [rsyslog.server_entry("tcp1", "TCP")])
    conn.start()
    assert conn.wait(30) == 2
    assert "https" in conn.output() and "BASE_URL" in conn.output()
    r = _cli(conn, "check")
    assert r.returncode == 2 and "https" in r.stderr


def test_plain_http_to_loopback_stays_allowed(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """Fakes and tests on this machine: http://127.0.0.1, http://localhost and http://[::1]."""
    for i, host in enumerate(["127.0.0.1", "localhost"]):
        conn = Connector(
            tmp_path / f"c{i}", f"http://{host}:{fake.port}", [rsyslog.server_entry("tcp1", "TCP")]
        ).start()
        try:
            conn.wait_log("siemconn_started")
            assert conn.alive()
        finally:
            conn.terminate()
    r = _cli(Connector(tmp_path / "c6", "http://[::1]:1", [rsyslog.server_entry("tcp1", "TCP")]), "check")
    assert "https" not in r.stderr and "configuration" in r.stdout


# --- 8. cert/NAME.pem pins ---------------------------------------------------------------------------


def _tls_files_with(directory: Path, ca: Path, cert: Path, key: Path) -> TlsFiles:
    base = make_certs(directory / "base")
    return TlsFiles(directory, ca, cert, key, base.client_cert, base.client_key, base.other_ca)


def test_a_pinned_ca_is_the_only_trust_anchor(tmp_path: Path, fake: FakeRux, rsyslog_factory: Any) -> None:
    """A receiver whose certificate another CA issued, that CA trusted through SSL_CERT_FILE (as a system
    store would): refused with cert/NAME.pem (also with tls_verify_hostname false) and with tls_ca_file;
    accepted, with a tls_ca_not_pinned warning, only when no pin exists; the pinned receiver gets all."""
    eca, ecert, ekey = make_ca_and_leaf(tmp_path / "evil", "evil", "127.0.0.1", "localhost")
    evil = rsyslog_factory(certs=_tls_files_with(tmp_path / "evil", eca, ecert, ekey))
    good = rsyslog_factory()

    def entry(rs: RsyslogReceiver, name: str, **extra: Any) -> dict[str, Any]:
        e = rs.server_entry(name, "TLS", mutual=False, **extra)
        if "tls_ca_file" not in extra:
            del e["tls_ca_file"]
        return e

    servers = [
        entry(evil, "pinned"),
        entry(evil, "pinned_nohost", tls_verify_hostname=False),
        entry(evil, "cafile", tls_ca_file=str(good.certs.ca)),
        entry(evil, "unpinned"),
        entry(good, "good"),
    ]
    conn = Connector(tmp_path / "c", fake.url, servers, schedule=EVERY_SECOND, max_backoff_seconds=1)
    cert_dir = conn.workdir / "cert"
    cert_dir.mkdir(parents=True)
    for name in ("pinned", "pinned_nohost", "good"):
        (cert_dir / f"{name}.pem").write_bytes(good.certs.ca.read_bytes())
    conn.env["SSL_CERT_FILE"] = str(eca)  # what a system store that trusts the other CA looks like
    conn.start()
    try:
        want = set(expected_payloads(fake))
        wait_for(lambda: len(good.raw_lines()) >= len(want), 40, "the pinned receiver's events")
        wait_for(lambda: len(evil.raw_lines()) >= len(want), 40, "the unpinned server's events")
        wait_for(
            lambda: (
                {"pinned", "pinned_nohost", "cafile"}
                <= {r["server"].split(" ")[0] for r in log_events(conn, "syslog_server_lost")}
            ),
            30,
            "three refusals",
        )
        assert conn.alive()
    finally:
        conn.terminate()
    reasons = {r["server"].split(" ")[0]: r["reason"] for r in log_events(conn, "syslog_server_lost")}
    unpinned = [r["server"] for r in log_events(conn, "tls_ca_not_pinned")]
    figure("bad_input_tls_pin", {"refused": sorted(reasons), "unpinned_warned": unpinned})
    assert len(evil.raw_lines()) == len(want)  # only the unpinned server's events reached it
    assert {"pinned", "pinned_nohost", "cafile"} <= set(reasons) and "good" not in reasons
    assert all("verification failed" in reasons[n] for n in ("pinned", "pinned_nohost", "cafile"))
    assert unpinned == ["unpinned"]


# --- 9. file permissions -----------------------------------------------------------------------------


def test_log_and_heartbeat_files_are_private_whatever_the_umask(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """umask 000: the log file is at most 0640 and the heartbeat file 0600; a world-writable config.json,
    a group-readable CLIENT_SECRET_FILE and TLS key are warned about (the service still runs)."""
    key = tmp_path / "client.key"
    key.write_bytes(rsyslog.certs.client_key.read_bytes())
    key.chmod(0o644)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tls1", "TLS", tls_client_key=str(key))],
        schedule=EVERY_SECOND,
    )
    conn.config_path.chmod(0o666)
    del conn.env["CLIENT_SECRET"]
    conn.env["CLIENT_SECRET_FILE"] = str(secret_file)
    conn.start(preexec_fn=lambda: os.umask(0))
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tls"), 40, "the events")
        heartbeat = conn.workdir / "data" / "siemconn.heartbeat"
        wait_for(heartbeat.exists, 20, "the heartbeat file")
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in [*(conn.workdir / "logs").iterdir(), heartbeat]
            if p.is_file()
        }
        assert conn.alive()
    finally:
        conn.terminate()
    warned = {r["what"]: r["mode"] for r in log_events(conn, "insecure_file_permissions")}
    check = _cli(conn, "check").stdout
    assert "warn   config.json" in check and "warn   CLIENT_SECRET_FILE" in check, check
    figure("bad_input_file_modes", {"modes": {k: oct(v) for k, v in modes.items()}, "warned": warned})
    assert modes["siemconn.log"] & ~0o640 == 0
    assert modes["siemconn.heartbeat"] == 0o600
    assert warned == {
        "config.json": "0666",
        "CLIENT_SECRET_FILE": "0644",
        "tls_client_key of server tls1": "0644",
    }


# --- 10. partial and escaped token leaks -------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    return {
        secret,
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        " ".join(secret.split()),
    }


def _leaks(text: str, secrets: list[str], n: int = 12) -> list[str]:
    """Every run of `n` characters of any form of any secret that appears in `text`."""
    found = []
    for s in secrets:
        for form in _forms(s):
            for i in range(len(form) - n + 1):
                if form[i : i + n] in text:
                    found.append(form[i : i + n])
    return found


def test_no_token_in_any_escaped_or_partial_form(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """Error bodies that echo the bearer token where the 200-character cut splits it, JSON-escaped and
    URL-encoded, and an access token with a newline in it: no 12 characters of any token or of the
    client secret appear in stdout or the log files."""
    conn = Connector(
        tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND
    ).start()
    newline_token = "nl-token-ABCDEFGHIJKL\nMNOPQRSTUVWXYZ-0123456789"
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        fake.add_fault(
            Fault(path="detections", status=400, body="x" * 180 + "@TOKEN@ is not valid here"),
            Fault(
                path="audits",
                status=400,
                body='{"detail": "token \\"@TOKEN@\\"", "secret": "' + SECRET + '"}',
            ),
            Fault(path="entity_scoring", status=404, body="<p>@TOKEN@</p>\n<p>" + SECRET[:20] + "</p>"),
        )
        wait_for(lambda: len(log_events(conn, PULL_FAILED)) >= 3, 30, "three error bodies logged")
        fake.revoke_tokens(refresh=True)
        fake.add_fault(
            Fault(
                path="/oauth2/token",
                status=None,
                body=json.dumps({"access_token": newline_token, "expires_in": 3600}),
            )
        )
        _append_all(fake, 20)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the events after the bad answers")
    finally:
        conn.terminate()
    text = conn.all_logs_text()
    leaks = _leaks(text, [*fake.issued_tokens(), newline_token, SECRET])
    figure("bad_input_token_leaks", {"tokens_checked": len(fake.issued_tokens()) + 2, "leaks": len(leaks)})
    assert "***" in text  # the echoed token was there, masked
    assert not leaks, leaks[:5]


# --- 11. metrics endpoint connection flood -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_idle_metrics_connections_cannot_exhaust_file_descriptors(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    """1,100 idle connections to the metrics port of a service limited to 1,024 file descriptors: its
    descriptors stay bounded, the syslog writer reconnects and delivers, /healthz answers once the idle
    clients are closed, and binding a non-loopback address is warned about."""
    port = _free_port()
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule=EVERY_SECOND,
        metrics_address=f"0.0.0.0:{port}",
        max_backoff_seconds=1,
    )

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    conn.start(preexec_fn=limit_fds)
    idle: list[socket.socket] = []
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        for _ in range(1100):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            idle.append(s)
        time.sleep(1.0)
        pid = conn.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rsyslog.restart()  # the writer must open a new connection while the idle clients are held
        _append_all(fake, 40)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, "the events while 1,100 clients idle")
        assert conn.alive()
    finally:
        for s in idle:
            s.close()
    try:
        ok = False
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    ok = c.recv(64).startswith(b"HTTP/1.1 ")
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        conn.terminate()
    out = conn.output()
    figure("bad_input_metrics_flood", {"idle_clients": len(idle), "service_fds": fds})
    assert "Too many open files" not in out
    assert fds < 200
    assert ok
    assert log_events(conn, "metrics_endpoint_not_loopback")
    assert re.search(r"0\.0\.0\.0:\d+", json.dumps(log_events(conn, "metrics_endpoint_not_loopback")))
