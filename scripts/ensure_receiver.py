#!/usr/bin/env python3
"""`make receiver` (a prerequisite of `make test`): make sure the real test receiver, rsyslogd with its
TLS (gtls, ossl) and RELP modules, is installed.

* Installed: nothing to do.
* Missing, running as root with apt-get: install it (`apt-get install -y rsyslog rsyslog-gnutls
  rsyslog-openssl rsyslog-relp`). The tests start their own rsyslogd on 127.0.0.1; the system service
  is not used.
* Missing otherwise: fail, printing the exact command to run.
* `SIEMCONN_SKIP_RSYSLOG=1`: the user opted out; the real-receiver tests are then skipped (and said so).

Standard library only: it runs with the system interpreter before the venv exists.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["APT_PACKAGES", "INSTALL_COMMAND", "Plan", "main", "missing_parts", "plan"]

APT_PACKAGES = ("rsyslog", "rsyslog-gnutls", "rsyslog-openssl", "rsyslog-relp")
INSTALL_COMMAND = "sudo apt-get install -y " + " ".join(APT_PACKAGES)
OPT_OUT = "SIEMCONN_SKIP_RSYSLOG"
# module file -> what it is, as rsyslog installs them under /usr/lib/<triplet>/rsyslog/
MODULES = {
    "lmnsd_gtls.so": "GnuTLS driver (rsyslog-gnutls)",
    "lmnsd_ossl.so": "OpenSSL driver (rsyslog-openssl)",
    "imrelp.so": "RELP input (rsyslog-relp)",
}


def rsyslogd_path(environ: Mapping[str, str]) -> str:
    """The rsyslogd the tests run (SIEMCONN_RSYSLOGD overrides, as in tests/support/rsyslog.py)."""
    return environ.get("SIEMCONN_RSYSLOGD") or shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def missing_parts(environ: Mapping[str, str]) -> list[str]:
    """What the test receiver lacks on this machine, one entry per missing piece (empty: complete)."""
    rsyslogd = rsyslogd_path(environ)
    if not os.access(rsyslogd, os.X_OK):
        return [f"rsyslogd ({rsyslogd} not found)"]
    moddirs = (
        [environ["SIEMCONN_RSYSLOG_MODDIR"]]
        if environ.get("SIEMCONN_RSYSLOG_MODDIR")
        else [
            *glob.glob("/usr/lib/*/rsyslog"),
            "/usr/lib/rsyslog",
            "/usr/lib64/rsyslog",
        ]
    )
    return [
        what
        for module, what in MODULES.items()
        if not any(os.path.exists(os.path.join(d, module)) for d in moddirs)
    ]


@dataclass(frozen=True)
class Plan:
    """What to do: "ok", "skip" (opted out), "install" (apt-get as root) or "fail" (print the command)."""

    action: str
    message: str


def plan(missing: Sequence[str], *, opted_out: bool, is_root: bool, has_apt: bool) -> Plan:
    """Decide from the facts alone (pure, so the decision is tested without touching the machine)."""
    if not missing:
        return Plan("ok", "test receiver: rsyslogd with gtls, ossl and relp modules is installed")
    if opted_out:
        return Plan(
            "skip",
            f"test receiver: {OPT_OUT}=1, so the real-rsyslog tests are skipped (missing: {', '.join(missing)})",
        )
    if is_root and has_apt:
        return Plan(
            "install", f"test receiver: installing {' '.join(APT_PACKAGES)} (missing: {', '.join(missing)})"
        )
    how = (
        f"run:\n\n    {INSTALL_COMMAND}\n"
        if has_apt
        else "install rsyslog with its gtls, ossl and relp modules with this system's package manager "
        f"(Debian/Ubuntu: {INSTALL_COMMAND})\n"
    )
    return Plan(
        "fail",
        f"error: the test receiver is missing: {', '.join(missing)}.\n"
        f"make test runs the suite against a real rsyslogd; {how}\n"
        f"then run make test again. To run the suite without the real-receiver tests instead:\n\n"
        f"    {OPT_OUT}=1 make test\n",
    )


def main(
    environ: Mapping[str, str] | None = None,
    *,
    is_root: bool | None = None,
    apt_get: str | None = None,
) -> int:
    env = os.environ if environ is None else environ
    apt = apt_get if apt_get is not None else (shutil.which("apt-get") or "")
    root = (os.geteuid() == 0) if is_root is None else is_root
    missing = missing_parts(env)
    p = plan(missing, opted_out=env.get(OPT_OUT, "") == "1", is_root=root, has_apt=bool(apt))
    if p.action == "ok":
        return 0
    print(p.message, file=sys.stderr if p.action == "fail" else sys.stdout, flush=True)
    if p.action != "install":
        return 0 if p.action == "skip" else 1
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-q"], [apt, "install", "-y", "-q", *APT_PACKAGES]):
        if subprocess.run(cmd, env=apt_env).returncode != 0:
            print(f"error: {' '.join(cmd)} failed; run {INSTALL_COMMAND} by hand", file=sys.stderr)
            return 1
    still = missing_parts(env)
    if still:
        print(f"error: still missing after apt-get: {', '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
