"""`siemconn check` uses the runtime record (issue 28, item 10): run from another directory while the
service runs, it checks the service's queue directory and certificate files, not this shell's. The
service as a subprocess, the fake RUX tenant, rsyslogd over TLS with the CA pinned by cert/NAME.pem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.e2e import Connector, start_fake
from support.reliability import delivered, wait_for
from support.rsyslog import RsyslogReceiver

pytestmark = pytest.mark.e2e


def test_check_from_another_directory_checks_the_running_services_paths(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_detections=10)
    tls = rsyslog.server_entry("tls1", "TLS", mutual=False)
    del tls["tls_ca_file"]  # pinned the reference's way: cert/tls1.pem, relative to the service's directory
    conn = Connector(
        tmp_path / "svc", fake.url, [tls], schedule="* * * * * *", data_dir="./data", cert_dir="./cert"
    )
    (conn.workdir / "cert").mkdir()
    (conn.workdir / "cert" / "tls1.pem").write_bytes(rsyslog.certs.ca.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    conn.start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tlsanon"), 40, "the events over TLS")
        r = subprocess.run(
            [sys.executable, "-m", "siemconn", "check", "--config", str(conn.config_path.absolute())],
            cwd=elsewhere,
            env=conn.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    out = r.stdout
    data_dir = (conn.workdir / "data").absolute()
    assert f"info   running service: pid {conn.pid}, working directory {conn.workdir}" in out, out
    assert f"ok     data directory: {data_dir} is in use by a running siemconn (pid {conn.pid})" in out, out
    assert "ok     syslog server tls1 (TLS" in out, out
    assert r.returncode == 0, out + r.stderr
    assert not (elsewhere / "data").exists()
