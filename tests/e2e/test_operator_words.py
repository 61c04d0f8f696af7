"""Error words an operator can act on (issue 28, item 8), seen from outside: the service as a subprocess
against the fake RUX tenant and real receivers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e import Connector, start_fake
from support.reliability import log_events, wait_for
from support.rsyslog import RsyslogReceiver
from support.smalldisk import small_tmpfs

from siemconn.devtools.fake_rux import Fault

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"


def test_unresolvable_server_host_names_the_dns_failure_and_the_host(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """Before: "cannot connect (Unknown error -2)". Now the reason names the DNS lookup and the host."""
    fake = start_fake(seed_detections=5)
    bad = {
        "name": "nodns",
        "server_protocol": "TCP",
        "server_host": "no-such-host.invalid",
        "server_port": 514,
    }
    conn = Connector(
        tmp_path / "c", fake.url, [bad, rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND
    ).start()
    try:
        conn.wait_log("syslog_server_lost", timeout=30)
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    reason = next(r["reason"] for r in log_events(conn, "syslog_server_lost") if "nodns" in r["server"])
    assert "Unknown error" not in reason, reason
    assert "cannot resolve server_host 'no-such-host.invalid'" in reason and "DNS" in reason, reason


def test_api_redirect_names_the_location_and_the_cause_and_is_not_followed(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """Before: "answered HTTP 302 for stream audit: " and nothing after it. Now the error names where the
    redirect points and the likely cause; the redirect is never followed (the fake sees no request to it),
    and the other streams keep flowing."""
    fake = start_fake(seed_detections=5)
    login = fake.url + "/sso/login?next=/api"
    fake.add_fault(Fault(path="audits", status=302, location=login, count=10**6))
    conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    conn.start()
    try:
        wait_for(
            lambda: any(e.get("stream") == "audit" for e in log_events(conn, "pull_failed")), 30, "the error"
        )
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    err = next(e["error"] for e in log_events(conn, "pull_failed") if e.get("stream") == "audit")
    assert f"redirect (HTTP 302) to {login}" in err, err
    assert "not followed" in err and "BASE_URL" in err, err
    assert fake.count_requests("/sso/login") == 0


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs mounted for this test (unmounted afterwards)."""
    with small_tmpfs(tmp_path / "disk", "1m") as mnt:
        yield mnt


def test_pull_paused_with_no_disk_floor_names_the_limit_that_was_not_met(
    tmp_path: Path, tiny_disk: Path, rsyslog: RsyslogReceiver
) -> None:
    """min_free_disk_mb 0 and a full 1 MB disk: before, queue_pull_paused said "0.1 MB, under
    min_free_disk_mb=0", which contradicts itself. Now it names how much the next page lacks."""
    fake = start_fake(seed_detections=3000)
    rsyslog.stop()  # nothing is delivered: the queue fills the disk
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule=EVERY_SECOND,
        data_dir=str(tiny_disk / "data"),
        min_free_disk_mb=0,
        page_size=50,
    )
    try:
        conn.start()
        conn.wait_log("queue_pull_paused", timeout=60)
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    reason = log_events(conn, "queue_pull_paused")[0]["reason"]
    assert "under min_free_disk_mb=0" not in reason, reason
    causes = ("MB short", "MB more than the file system has free", "is full: ")
    assert any(c in reason for c in causes), reason
