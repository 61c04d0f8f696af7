"""`make demo` and `make test` on a new machine: what they install, and the real receiver never skipped
silently (issue 15, items 7 and 8)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make_dry_run(target: str, tmp_path: Path) -> list[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed; the README's commands need it")
    r = subprocess.run(
        [make, "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("make")]


def test_make_demo_installs_only_the_service(tmp_path: Path) -> None:
    cmds = _make_dry_run("demo", tmp_path)
    installs = [c for c in cmds if "pip install" in c and "--upgrade pip" not in c]
    # the dependencies from the lock, hash-checked, then siemconn itself resolving nothing more
    assert installs == [
        f"{tmp_path / 'venv'}/bin/python -m pip install -q --require-hashes -r requirements.lock",
        f"{tmp_path / 'venv'}/bin/python -m pip install -q --no-deps -e .",
    ], cmds
    assert not any("[test]" in c or "-m pytest" in c or "ensure_receiver" in c for c in cmds), cmds
    assert cmds[-1] == f"{tmp_path / 'venv'}/bin/python -m siemconn.devtools.demo"


def test_make_test_installs_the_toolchain_and_the_receiver_first(tmp_path: Path) -> None:
    cmds = _make_dry_run("test", tmp_path)
    assert any("pip install -q -e '.[test]'" in c for c in cmds), cmds
    receiver = next(i for i, c in enumerate(cmds) if "scripts/ensure_receiver.py" in c)
    pytest_run = next(i for i, c in enumerate(cmds) if "-m pytest" in c)
    assert receiver < pytest_run


# --- the receiver script ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ensure_receiver", ROOT / "scripts" / "ensure_receiver.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ensure_receiver"] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


def test_plan_covers_every_case(script: ModuleType) -> None:
    plan = script.plan
    assert plan([], opted_out=False, is_root=False, has_apt=False).action == "ok"
    miss = ["rsyslogd (/usr/sbin/rsyslogd not found)"]
    assert plan(miss, opted_out=True, is_root=True, has_apt=True).action == "skip"
    assert plan(miss, opted_out=False, is_root=True, has_apt=True).action == "install"
    fail = plan(miss, opted_out=False, is_root=False, has_apt=True)
    assert fail.action == "fail"
    assert script.INSTALL_COMMAND in fail.message and "SIEMCONN_SKIP_RSYSLOG=1 make test" in fail.message
    assert (
        script.INSTALL_COMMAND
        == "sudo apt-get install -y rsyslog rsyslog-gnutls rsyslog-openssl rsyslog-relp"
    )
    other = plan(miss, opted_out=False, is_root=True, has_apt=False)
    assert other.action == "fail" and "package manager" in other.message


def test_script_without_rsyslogd_prints_the_exact_command(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"SIEMCONN_RSYSLOGD": "/nonexistent/rsyslogd"}
    assert script.main(env, is_root=False, apt_get="/usr/bin/apt-get") == 1
    err = capsys.readouterr().err
    assert "rsyslogd (/nonexistent/rsyslogd not found)" in err
    assert f"\n    {script.INSTALL_COMMAND}\n" in err


def test_script_as_root_runs_apt_get_and_reports_its_failure(
    script: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake_apt = tmp_path / "apt-get"
    log = tmp_path / "calls"
    fake_apt.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 1\n')
    fake_apt.chmod(0o755)
    env = {"SIEMCONN_RSYSLOGD": "/nonexistent/rsyslogd", "PATH": os.environ.get("PATH", "")}
    assert script.main(env, is_root=True, apt_get=str(fake_apt)) == 1
    assert log.read_text().splitlines() == ["update -q"]
    assert "failed; run sudo apt-get install" in capsys.readouterr().err


def test_script_opt_out_and_complete_machine(script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SIEMCONN_RSYSLOGD": "/nonexistent/rsyslogd", "SIEMCONN_SKIP_RSYSLOG": "1"}
    assert script.main(env, is_root=False, apt_get="") == 0
    assert "SIEMCONN_SKIP_RSYSLOG=1" in capsys.readouterr().out
    # this machine has the receiver (the suite's real-rsyslog tests ran or failed loudly before this)
    assert script.missing_parts(os.environ) == [], "test receiver incomplete: run make receiver"


# --- the suite itself: fail loudly, or skip only when asked ---------------------------------------


def _pytest(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIEMCONN_SKIP_RSYSLOG"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/e2e/test_rsyslog_roundtrip.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, **env_extra},
    )


def test_suite_without_rsyslogd_fails_with_the_command() -> None:
    r = _pytest({"SIEMCONN_RSYSLOGD": "/nonexistent/rsyslogd"})
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    text = r.stdout + r.stderr
    assert "sudo apt-get install -y rsyslog rsyslog-gnutls rsyslog-openssl rsyslog-relp" in text
    assert "SIEMCONN_SKIP_RSYSLOG=1 make test" in text


def test_suite_opt_out_skips_and_says_why() -> None:
    r = _pytest({"SIEMCONN_RSYSLOGD": "/nonexistent/rsyslogd", "SIEMCONN_SKIP_RSYSLOG": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" not in r.stdout and "skipped" in r.stdout
    assert "SIEMCONN_SKIP_RSYSLOG=1" in r.stdout
