"""`make demo`'s launcher: fake tenant + printing receiver + siemconn, events of all streams flowing."""

from __future__ import annotations

import subprocess
import sys
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
        for key in ("audit", "detections", "entity_scoring.account", "entity_scoring.host"):
            assert f"stream={key}" in log, (run, key, log[-2000:])
        assert "Traceback" not in out


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
