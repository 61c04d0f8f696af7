"""siemconn.ops.heartbeat: the heartbeat file (written atomically, carrying the health verdict) and the
container health check that reads it. The in-band syslog heartbeat is tests/unit/syslog/test_heartbeat.py."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from support.clock import Clock
from support.configs import configuration

from siemconn.ops.health import Health
from siemconn.ops.heartbeat import HEARTBEAT_FILE, check_heartbeat, heartbeat_path, main, write_heartbeat


def test_heartbeat_fresh_stale_missing(tmp_path: Path) -> None:
    assert check_heartbeat(tmp_path)[0] is False
    assert "no heartbeat file" in check_heartbeat(tmp_path)[1]
    path = write_heartbeat(tmp_path, now=1000.0)
    assert path == tmp_path / HEARTBEAT_FILE
    assert json.loads(path.read_text())["time"] == 1000.0
    assert check_heartbeat(tmp_path, max_age=60, now=1059.0) == (True, "ok: heartbeat 59 s old")
    ok, reason = check_heartbeat(tmp_path, max_age=60, now=1061.0)
    assert not ok and "61 s old" in reason
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]  # no temp file left behind


def test_heartbeat_carries_health_verdict(tmp_path: Path) -> None:
    clock = Clock()
    h = Health(["siem1"], window=10, clock=clock)
    h.server_failed("siem1", "certificate verify failed")
    clock.t += 11
    h.loop_alive()
    write_heartbeat(tmp_path, h, now=clock.t)
    ok, reason = check_heartbeat(tmp_path, now=clock.t + 1)
    assert not ok and "siem1" in reason and "certificate verify failed" in reason
    assert check_heartbeat(tmp_path, now=clock.t + 1, liveness_only=True)[0] is True
    h.server_ok("siem1")
    write_heartbeat(tmp_path, h, now=clock.t)
    assert check_heartbeat(tmp_path, now=clock.t + 1)[0] is True


def test_corrupt_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text("{not json")
    ok, reason = check_heartbeat(tmp_path)
    assert not ok and "unreadable" in reason


def test_healthcheck_command_reads_data_dir_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    conf = configuration(data_dir="./state").model_dump(exclude_unset=True)
    (tmp_path / "config.json").write_text(json.dumps({"configuration": conf}))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "config.json"], out=out) == 1
    assert "no heartbeat file" in out.getvalue()
    (tmp_path / "state").mkdir()
    write_heartbeat(Path("state"))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "config.json"], out=out) == 0
    assert out.getvalue().startswith("ok:")
    # default data_dir is ./data; a missing config is reported, not raised
    out = io.StringIO()
    assert main(["healthcheck", "--config", "missing.json"], out=out) == 1
    assert "cannot read missing.json" in out.getvalue() and "file not found" in out.getvalue()
    # the config loader reads it: an invalid file is reported with the field, not guessed around
    (tmp_path / "bad.json").write_text(json.dumps({"configuration": {"data_dir": 5}}))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "bad.json"], out=out) == 1
    assert "cannot read bad.json" in out.getvalue() and "configuration.data_dir" in out.getvalue()
    out = io.StringIO()
    assert main(["healthcheck", "--data-dir", "state", "--max-age", "30"], out=out) == 0


def test_the_heartbeat_paths_are_built_once(tmp_path: Path) -> None:
    """pathlib interns each part of a path, and a part leaves Python's table of interned strings with its
    last Path: rebuilding the heartbeat paths every 5 s churned that table until it doubled (~0.9 MB that
    stayed, issue 30). They are built once per data_dir and kept, so their parts stay interned."""
    first = write_heartbeat(tmp_path)
    again = write_heartbeat(str(tmp_path))
    assert first is again is heartbeat_path(tmp_path)
    assert sys.intern("".join(["siemconn", ".heartbeat"])) is first.name
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]  # the temporary file was renamed
