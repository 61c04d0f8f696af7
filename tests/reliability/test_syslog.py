"""Reliability: syslog-side faults against the real service (subprocess), the fake RUX tenant and rsyslogd.

Every test counts expected / received / missing / duplicated per destination and prints a FIGURE line;
docs/reliability.md quotes them. Each test has a short CI variant and a long one marked `soak`.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.e2e import (
    Connector,
    expected_payloads,
    received,
    serve_fake,
    start_fake,
    summary,
)
from support.reliability import (
    ALL_DOWN,
    Appender,
    RudeReceiver,
    Supervisor,
    assert_no_secrets,
    delivered,
    figure,
    kill_receiver_mid_backlog,
    missing_keys,
    random_pauses,
    tally,
    variants,
    wait_delivered_and_quiet,
    wait_for,
)
from support.rsyslog import RelpReceiver, RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux

pytestmark = pytest.mark.e2e

BATCH = 100  # batch_size of these runs: the duplicate bound is one batch per destination per fault
EVERY_SECOND = "* * * * * *"


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=30, seed_detections=300, seed_entity=40)


def _servers(rs: RsyslogReceiver) -> list[dict[str, Any]]:
    return [rs.server_entry("tcp1", "TCP"), rs.server_entry("tls1", "TLS")]


def _connector(tmp_path: Path, fake: FakeRux, servers: list[dict[str, Any]], **extra: Any) -> Connector:
    """The service as these tests run it: cron every second, small batches, quick reconnects."""
    options: dict[str, Any] = {
        "schedule": EVERY_SECOND,
        "batch_size": BATCH,
        "max_backoff_seconds": 1,
        **extra,
    }
    return Connector(tmp_path / "c", fake.url, servers, **options)


@pytest.mark.parametrize("retry_count", [-1, 2])
@pytest.mark.parametrize("outage", variants(8, 60))
def test_syslog_outage_loses_nothing(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, outage: float, retry_count: int
) -> None:
    """rsyslog stopped for `outage` s while events keep arriving; TCP and TLS destinations.

    retry_count -1: the writers retry forever. retry_count 2: both servers are declared down, the process
    exits with code 3 and the test restarts it after 1 s, as a restart policy would."""
    conn = _connector(tmp_path, fake, _servers(rsyslog), retry_count=retry_count).start()
    sup = Supervisor(conn, delay=1.0)
    app = Appender(fake).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp", "tls"), 40, "the seeded events", sup.poll)
        fake.append("detections", 1500)  # the outage starts while a backlog is being delivered
        rsyslog.wait_for(200, since=rsyslog.mark(), timeout=30)
        before = len(expected_payloads(fake))
        rsyslog.stop()  # graceful: SIGTERM
        t_end = time.monotonic() + outage
        while time.monotonic() < t_end:
            sup.poll()
            time.sleep(0.2)
        during = len(expected_payloads(fake)) - before
        rsyslog.start()
        time.sleep(2)
        app.stop()
        with contextlib.suppress(AssertionError):  # a loss is reported by the summary below
            wait_for(
                lambda: delivered(rsyslog, fake, "tcp", "tls"),
                60 + outage,
                "every event after the outage",
                sup.poll,
            )
        while not conn.alive():  # a restart may be pending: let it come up so terminate() is clean
            sup.poll()
            time.sleep(0.1)
        assert conn.terminate() == 0
    finally:
        app.stop()
        conn.kill()
    results = {p: tally(rsyslog, fake, p) for p in ("tcp", "tls")}
    figure(
        f"syslog_outage[{outage}s,retry_count={retry_count}]",
        {"arrived_during_outage": during, "restarts": sup.restarts, **{p: r for p, r in results.items()}},
    )
    for proto, s in results.items():
        assert s["missing"] == 0, (proto, s, missing_keys(rsyslog, fake, proto)[:20])
        assert s["unexpected"] == 0
        assert s["duplicated"] <= BATCH, (proto, s)  # one graceful receiver stop: at most one batch
    assert during > 0
    if retry_count >= 0:
        assert sup.restarts >= 1 and conn.exit_codes.count(ALL_DOWN) == sup.restarts
        assert conn.exit_codes[-1] == 0
    else:
        assert conn.exit_codes == [0] and sup.restarts == 0
    assert_no_secrets(conn, fake)


@pytest.mark.parametrize("restarts", variants(1, 10))
def test_receiver_graceful_restart_loses_nothing(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, restarts: int
) -> None:
    """rsyslog restarted (SIGTERM, start) `restarts` times while a backlog is being delivered."""
    conn = _connector(tmp_path, fake, _servers(rsyslog)).start()
    app = Appender(fake).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp", "tls"), 40, "the seeded events")
        for _ in range(restarts):
            fake.append("detections", 2000)  # a backlog in flight when the receiver goes away
            mark = rsyslog.mark()
            rsyslog.wait_for(200, since=mark, timeout=30)
            rsyslog.restart()
        app.stop()
        with contextlib.suppress(AssertionError):  # a loss is reported by the summary below
            wait_for(lambda: delivered(rsyslog, fake, "tcp", "tls"), 90, "every event after the restarts")
        assert conn.terminate() == 0
    finally:
        app.stop()
        conn.kill()
    results = {p: tally(rsyslog, fake, p) for p in ("tcp", "tls")}
    figure(f"receiver_graceful_restart[{restarts}x]", results)
    for proto, s in results.items():
        assert s["missing"] == 0, (proto, s, missing_keys(rsyslog, fake, proto)[:20])
        assert s["duplicated"] <= restarts * BATCH, (proto, s)
    assert_no_secrets(conn, fake)


@pytest.mark.parametrize("kills", variants(1, 10))
def test_receiver_hard_kill_loss_is_bounded(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, kills: int
) -> None:
    """SIGKILL of rsyslogd while a backlog is delivered.

    Plain syslog over TCP has no application ack: what the receiver's TCP stack acked but rsyslogd had not
    yet written is gone with the process. The writer acks a batch only after the peer's TCP ACK of every
    byte plus a settle time, so the loss is bounded by what rsyslogd held in memory: at most the last acked
    batch per destination (BATCH events) per kill (see docs/reliability.md)."""
    conn = _connector(tmp_path, fake, _servers(rsyslog)).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp", "tls"), 40, "the seeded events")
        kill_receiver_mid_backlog(rsyslog, fake, kills, backlog=2000, seen=300, timeout=30, pause=0.5)
        wait_delivered_and_quiet(conn, rsyslog, fake, 90)
        assert conn.terminate() == 0
    finally:
        conn.kill()
    results = {p: tally(rsyslog, fake, p) for p in ("tcp", "tls")}
    figure(f"receiver_hard_kill[{kills}x]", results)
    for proto, s in results.items():
        assert s["missing"] <= kills * BATCH, (proto, s)
        assert s["duplicated"] <= kills * BATCH, (proto, s)
        assert s["unexpected"] == 0


@pytest.mark.parametrize("kills", variants(5, 20))
def test_sigkill_connector_at_random_moments(tmp_path: Path, rsyslog: RsyslogReceiver, kills: int) -> None:
    """SIGKILL of siemconn `kills` times at random moments (mid-pull, mid-delivery), restarted each time."""
    fake = start_fake(seed_audit=200, seed_detections=4000, seed_entity=300)
    app = Appender(fake, every=0.2, detections=10).start()
    try:
        conn = _connector(tmp_path, fake, _servers(rsyslog), page_size=200)
        conn.start()
        try:
            for pause in random_pauses(kills, seed=kills, low=0.6, high=2.5):
                time.sleep(pause)
                conn.kill()
                assert conn.exit_codes[-1] == -signal.SIGKILL
                conn.start()
            app.stop()
            with contextlib.suppress(AssertionError):  # a loss is reported by the summary below
                wait_for(lambda: delivered(rsyslog, fake, "tcp", "tls"), 120, "every event after the kills")
            assert conn.terminate() == 0
        finally:
            conn.kill()
        results = {p: tally(rsyslog, fake, p) for p in ("tcp", "tls")}
        figure(f"sigkill_connector[{kills}x]", results)
        for proto, s in results.items():
            assert s["missing"] == 0, (proto, s)
            assert s["unexpected"] == 0
            assert s["duplicated"] <= kills * BATCH, (proto, s)  # at most one batch per destination per kill
        assert_no_secrets(conn, fake)
    finally:
        app.stop()
        fake.stop()


@pytest.mark.parametrize("rude", variants(1, 5))
def test_receiver_dropping_unread_data_loses_nothing(tmp_path: Path, fake: FakeRux, rude: int) -> None:
    """A receiver that crashes mid-batch: it reads a few bytes and closes with the rest unread (reset). The
    writer acks a batch only after the peer's TCP ACK of every byte plus a settle time in which such a reset
    still fails the write, so the batch is resent on the next connection: nothing lost, at most one batch
    duplicated per dropped connection (here 0: the dropped connection delivered no complete line)."""
    rx = RudeReceiver(rude=rude)
    entry = {"name": "rude1", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": rx.port}
    conn = _connector(tmp_path, fake, [entry]).start()
    try:
        want = set(expected_payloads(fake))
        with contextlib.suppress(AssertionError):  # on a loss, the summary below says what is missing
            wait_for(
                lambda: want <= set(received(rx.lines())[0]), 40, "every event past the dropped connections"
            )
        assert conn.terminate() == 0
    finally:
        conn.kill()
        rx.close()
    counts, _ = received(rx.lines())
    s = summary(expected_payloads(fake), counts)
    figure(f"receiver_drops_unread[{rude}x]", {**s, "connections": rx.connections})
    assert rx.connections > rude
    assert s["missing"] == 0, s
    assert s["duplicated"] <= rude * BATCH, s


@pytest.mark.e2e
@pytest.mark.parametrize("kills", variants(5, 20))
def test_receiver_sigkill_relp_loses_nothing(tmp_path: Path, relp_receiver: RelpReceiver, kills: int) -> None:
    """rsyslogd (imrelp, ack means stored) is SIGKILLed `kills` times while a backlog streams over RELP and
    RELP+TLS. Every event arrives: a batch is acked only after rsp 200 for each of its events. The
    duplicates are bounded by the batch whose answers the kill interrupted: one batch per destination
    per kill (with batch_size <= window_size, also within the window)."""
    fake = start_fake(seed_audit=30, seed_detections=300, seed_entity=40)
    rs = relp_receiver
    servers = [rs.server_entry("relp1", "RELP"), rs.server_entry("relptls1", "RELP-TLS")]
    conn = Connector(
        tmp_path / "c", fake.url, servers, schedule="* * * * * *", batch_size=BATCH, max_backoff_seconds=1
    ).start()
    try:
        wait_for(lambda: delivered(rs, fake, "relp", "relptls"), 60, "the seeded events")
        kill_receiver_mid_backlog(rs, fake, kills, backlog=1500, seen=300, timeout=60, pause=0.3)
        wait_delivered_and_quiet(conn, rs, fake, 120)
        assert conn.terminate() == 0
        assert_no_secrets(conn, fake)
    finally:
        conn.kill()
        fake.stop()
    results = {p: tally(rs, fake, p) for p in ("relp", "relptls")}
    figure(f"relp_receiver_sigkill[{kills}x]", results)
    for proto, s in results.items():
        assert s["missing"] == 0, (proto, s)
        assert s["unexpected"] == 0, (proto, s)
        assert s["duplicated"] <= kills * BATCH, (proto, s)
