"""`make demo`'s launcher: fake tenant + printing receiver + siemconn, events of all streams flowing."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def test_demo_shows_events_of_every_stream(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    for run in (1, 2):  # a second run starts afresh: a new fake tenant must not meet old checkpoints
        out = subprocess.run(
            [sys.executable, "-m", "siemconn.devtools.demo", "--seconds", "8", "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        lines = [ln for ln in out.splitlines() if "VECTRA-SYSLOG-CONNECTOR: {" in ln]
        assert any(" tcp " in ln for ln in lines) and any(" udp " in ln for ln in lines), (run, out[-2000:])
        log = (workdir / "siemconn.out").read_text()
        for key in (
            "audit",
            "detections",
            "entity_scoring.account",
            "entity_scoring.host",
            "health",
            "lockdown",
        ):
            assert f"stream={key}" in log, (run, key, log[-2000:])
        # routing: the UDP server takes only detections and entity scoring
        assert any(" tcp " in ln and '"lock_event_timestamp"' in ln for ln in lines), out[-2000:]
        assert any(" tcp " in ln and '{"connectivity": {' in ln for ln in lines), out[-2000:]
        assert not any(
            " udp " in ln and ('"lock_event_timestamp"' in ln or '{"connectivity": {' in ln) for ln in lines
        )
        assert "Traceback" not in out


def _drain(fd: int, sink: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        sink.append(chunk)


def test_ctrl_c_in_a_terminal_stops_siemconn_cleanly(tmp_path: Path) -> None:
    """Ctrl-C on the demo's terminal: SIGINT reaches every process; siemconn stops cleanly, no emergency exit."""
    workdir = tmp_path / "demo"
    pid, master = pty.fork()  # the child gets a new session whose controlling terminal is the pty
    if pid == 0:  # pragma: no cover - child
        os.execv(sys.executable, [sys.executable, "-m", "siemconn.devtools.demo", "--workdir", str(workdir)])
    out: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, out), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"VECTRA-SYSLOG-CONNECTOR: {" not in b"".join(out):
            assert time.monotonic() < deadline, b"".join(out)[-2000:]
            time.sleep(0.2)
        os.write(master, b"\x03")  # the terminal's Ctrl-C: SIGINT to the foreground process group
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "demo did not stop after Ctrl-C"
            time.sleep(0.1)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    reader.join(timeout=5)
    os.close(master)
    log = (workdir / "siemconn.out").read_text()
    assert "shutdown_requested" in log and "siemconn_stopped" in log, log[-2000:]
    assert "second_signal_exit" not in log, log[-2000:]
    assert "exit_code=0" in log.split("siemconn_stopped", 1)[1].splitlines()[0], log[-2000:]
    assert b"Traceback" not in b"".join(out), b"".join(out)[-3000:]


def test_sigint_then_sigterm_half_a_millisecond_apart_is_one_request(tmp_path: Path) -> None:
    """A launcher that forwards SIGTERM right after the group's SIGINT: still a clean stop (exit 0)."""
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "siemconn.devtools.demo", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell job is; no terminal
    )
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(proc.stdout.fileno(), out), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"VECTRA-SYSLOG-CONNECTOR: {" not in b"".join(out):
            assert time.monotonic() < deadline, b"".join(out)[-2000:]
            time.sleep(0.2)
        # SIGINT to the whole group; the launcher (no terminal) forwards SIGTERM within a millisecond
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = (workdir / "siemconn.out").read_text()
    assert "siemconn_stopped" in log and "second_signal_exit" not in log, log[-2000:]
    assert "signal_repeated" in log, log[-2000:]


def test_demo_shows_a_cef_server(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "siemconn.devtools.demo",
            "--seconds",
            "8",
            "--workdir",
            str(tmp_path / "d"),
            "--format",
            "cef",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = [ln for ln in out.splitlines() if " CEF:0|Vectra AI|RUX " in ln]
    assert any(" tcp " in ln for ln in lines) and any(" udp " in ln for ln in lines), out[-2000:]
    assert any("|RUX Detections|" in ln for ln in lines) and any("|RUX Audit|" in ln for ln in lines)
    assert "Traceback" not in out


def test_demo_shows_detailed_detections(tmp_path: Path) -> None:
    """--detailed: detections from API v3.5 with size=detailed, printed whole; CEF names the far side."""
    workdir = tmp_path / "d"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "siemconn.devtools.demo",
            "--seconds",
            "8",
            "--workdir",
            str(workdir),
            "--detailed",
            "--format",
            "cef",
            "--no-snapshots",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = [ln for ln in out.splitlines() if "|RUX Detections|" in ln]
    status = " flexString1Label=investigationStatus flexString1="
    assert lines and all(status in ln for ln in lines), out[-2000:]
    assert any(" dhost=" in ln or " duser=" in ln for ln in lines), out[-2000:]
    assert '"api_version": "v3.5"' in (workdir / "config.json").read_text()
    assert "Traceback" not in out
