#!/usr/bin/env python3
"""Unpack Debian's syslog-ng (the `syslog-ng-core` package and the libraries a stock Debian 12 lacks)
into a private directory for the real-collector tests, without installing it.

syslog-ng and rsyslog conflict as Debian packages (both provide the system logger), and the tests need
rsyslog installed. syslog-ng only has to run as a plain process on test ports, so the packages are
fetched with `apt-get download` and unpacked with `dpkg -x` into `SIEMCONN_SYSLOG_NG_DIR` (default
~/.cache/siemconn/syslog-ng/root); tests/support/syslogng.py runs it from there. Nothing is done when a
`syslog-ng` is on PATH or the unpacked one already runs, and with `SIEMCONN_SKIP_SYSLOG_NG=1` (or the
real-receiver opt-out `SIEMCONN_SKIP_RSYSLOG=1`), in which case the syslog-ng tests are reported as
skipped.

Standard library only: it runs with the system interpreter before the venv exists. Exit status 0 when
syslog-ng is usable afterwards, 1 otherwise (with the reason).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("syslog-ng-core", "libivykis0", "libpcre3", "libnet1", "libwrap0", "libjson-c5")


def base_dir() -> Path:
    env = os.environ.get("SIEMCONN_SYSLOG_NG_DIR")
    return Path(env) if env else Path.home() / ".cache" / "siemconn" / "syslog-ng"


def runs(root: Path) -> bool:
    """Whether the unpacked syslog-ng under `root` starts (`--version`)."""
    binary = root / "usr" / "sbin" / "syslog-ng"
    if not os.access(binary, os.X_OK):
        return False
    libs = [root / "usr/lib/syslog-ng", root / "usr/lib/x86_64-linux-gnu", root / "lib/x86_64-linux-gnu"]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(str(p) for p in libs))
    done = subprocess.run([str(binary), "--version"], env=env, capture_output=True, check=False)
    return done.returncode == 0


def main() -> int:
    for opt_out in ("SIEMCONN_SKIP_SYSLOG_NG", "SIEMCONN_SKIP_RSYSLOG"):
        if os.environ.get(opt_out) == "1":
            print(f"fetch_syslog_ng: {opt_out}=1; the syslog-ng tests will be skipped")
            return 0
    if shutil.which("syslog-ng"):
        print("fetch_syslog_ng: syslog-ng is on PATH; nothing to do")
        return 0
    root = base_dir() / "root"
    if runs(root):
        print(f"fetch_syslog_ng: {root} already runs; nothing to do")
        return 0
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        print("fetch_syslog_ng: needs apt-get and dpkg (Debian or Ubuntu)", file=sys.stderr)
        return 1
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=False)
        if done.returncode != 0 and os.geteuid() == 0:
            # a machine whose package lists were never fetched: fetch them once and try again
            subprocess.run(["apt-get", "update"], check=False)
            done = subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=False)
        if done.returncode != 0:
            print("fetch_syslog_ng: apt-get download failed (run apt-get update?)", file=sys.stderr)
            return 1
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    if not runs(root):
        print(f"fetch_syslog_ng: the syslog-ng unpacked into {root} does not run", file=sys.stderr)
        return 1
    print(f"fetch_syslog_ng: syslog-ng unpacked into {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
