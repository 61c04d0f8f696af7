"""The command line as a process (`python -m siemconn`), as a new user meets it: no credentials for local
commands, `check`'s line for an API port that refuses, usage errors, `--help`, `--version`, and a closed
stdout. `check`'s other answers, in-process, are tests/unit/commands/test_check.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.e2e import wait_until
from support.rsyslog import RsyslogReceiver, free_port

from siemconn import __version__
from siemconn.cli import ExitCode

API_ENV = ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET", "CLIENT_SECRET_FILE")


def _write_config(tmp_path: Path, servers: list[dict[str, Any]]) -> Path:
    p = tmp_path / "config.json"
    doc = {
        "configuration": {
            "server": servers,
            "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
            "retry_count": 0,
            "data_dir": str(tmp_path / "data"),
            "log_dir": str(tmp_path / "logs"),
        }
    }
    p.write_text(json.dumps(doc))
    return p


def _no_api_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in API_ENV}


def _siemconn(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siemconn", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_no_api_env() if env is None else env,
        **kw,
    )


# --- item 1: status and send-test without API credentials -----------------------------------


def test_status_runs_without_api_credentials(tmp_path: Path) -> None:
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    r = _siemconn("status", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "no queue database yet" in r.stdout
    assert "BASE_URL" not in r.stderr


def test_send_test_runs_without_api_credentials(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    cfg = _write_config(tmp_path, [rsyslog.server_entry("t", "TCP")])
    r = _siemconn("send-test", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok     send-test t" in r.stdout
    assert any("SIEMCONN-TEST-MESSAGE" in f.msg for f in rsyslog.wait_fields(1))


def test_check_still_needs_credentials(tmp_path: Path) -> None:
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    r = _siemconn("check", "--config", str(cfg))
    assert r.returncode == ExitCode.CONFIG
    assert r.stderr.startswith("error: invalid environment\nenvironment: 3 problems\n"), r.stderr
    assert "env BASE_URL is not set" in r.stderr


# --- item 9: check's answers ----------------------------------------------------------------


def test_check_api_port_refused_is_one_clear_line(tmp_path: Path) -> None:
    closed = free_port()
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    env = {**_no_api_env(), "BASE_URL": f"http://127.0.0.1:{closed}", "CLIENT_ID": "c", "CLIENT_SECRET": "s"}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    r = _siemconn("check", "--config", str(cfg), env=env)
    assert r.returncode == 1
    api = [ln for ln in r.stdout.splitlines() if "Vectra API" in ln]
    assert api == [
        f"FAILED Vectra API: cannot connect to 127.0.0.1:{closed}: connection refused (nothing listens on "
        f"that port); check BASE_URL (http://127.0.0.1:{closed}), DNS and firewall"
    ], r.stdout
    assert r.stderr == ""  # no backoff log lines mixed in
    assert "ConnectError" not in r.stdout


# --- item 11: usage, help, closed stdout ----------------------------------------------------


def test_no_arguments_is_a_usage_error_not_a_config_error() -> None:
    r = _siemconn()
    assert r.returncode == ExitCode.USAGE == 64
    assert r.stderr.startswith("usage: siemconn")
    r = _siemconn("status", "--bogus")
    assert r.returncode == ExitCode.USAGE


def test_help_names_environment_and_exit_codes() -> None:
    r = _siemconn("--help")
    assert r.returncode == 0
    for word in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET", "CLIENT_SECRET_FILE", "exit codes:"):
        assert word in r.stdout
    for code in (
        ExitCode.OK,
        ExitCode.UNEXPECTED,
        ExitCode.CONFIG,
        ExitCode.ALL_SERVERS_DOWN,
        ExitCode.USAGE,
    ):
        assert f"\n  {code} " in r.stdout, code
    assert "exit codes:" in _siemconn("check", "--help").stdout


@pytest.mark.parametrize("args", [("status",), ("--help",), ("check",)])
def test_closed_stdout_prints_no_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    env = {
        **_no_api_env(),
        "BASE_URL": f"http://127.0.0.1:{free_port()}",
        "CLIENT_ID": "c",
        "CLIENT_SECRET": "s",
    }
    extra = () if args == ("--help",) else ("--config", str(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "siemconn", *args, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before siemconn writes its first line (`| head -0`)
    err = proc.stderr.read().decode()
    # argparse itself ignores write errors of --help (exit 0); the commands report the broken pipe
    want = ExitCode.OK if args == ("--help",) else ExitCode.BROKEN_PIPE
    assert proc.wait(timeout=60) == want, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_status_into_head_two(tmp_path: Path) -> None:
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    r = subprocess.run(
        f"{sys.executable} -m siemconn status --config {cfg} | head -2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=_no_api_env(),
    )
    assert len(r.stdout.splitlines()) == 2
    assert "Traceback" not in r.stderr, r.stderr


def test_run_with_a_closed_stdout_keeps_running_and_logging_to_its_file(tmp_path: Path) -> None:
    """`siemconn run | head -1`: no 'Logging error' traceback per record; the file log goes on."""
    cfg = _write_config(
        tmp_path, [{"name": "u", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}]
    )
    env = {
        **_no_api_env(),
        "BASE_URL": f"http://127.0.0.1:{free_port()}",
        "CLIENT_ID": "c",
        "CLIENT_SECRET": "s",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "siemconn", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    log = tmp_path / "logs" / "siemconn.log"
    try:
        wait_until(lambda: log.exists() and "api_unavailable" in log.read_text(), 30, "API retries logged")
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == ExitCode.OK
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    assert "Logging error" not in err and "Traceback" not in err, err
    assert "shutdown_requested" in log.read_text()


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
