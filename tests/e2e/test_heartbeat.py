"""The in-band heartbeat against real rsyslogd (imtcp and imrelp), with siemconn as a subprocess pulling
from the fake RUX tenant: heartbeats arrive at the interval beside the events; while the receiver is
stopped none is sent or kept, and after it comes back there is no burst of old ones while the events'
backlog drains exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import cefparse, leefparse
from support.e2e import Connector, expected_payloads, received, start_fake, summary
from support.poison_api import PoisonApi, event
from support.reliability import queue_drained, wait_for
from support.rsyslog import RelpReceiver, RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux
from siemconn.syslog.heartbeat import HEARTBEAT_SIGNATURE

INTERVAL = 1
DOWN_SECONDS = 6.0


def _heartbeats(rs: RsyslogReceiver, proto: str) -> list[dict[str, Any]]:
    """The heartbeat bodies received on input `proto`, in arrival order."""
    out = []
    for f in rs.fields_lines():
        if f.proto == proto and '{"siemconn_heartbeat": ' in f.msg:
            body: dict[str, Any] = json.loads(f.msg[f.msg.index("{") :])["siemconn_heartbeat"]
            out.append(body)
    return out


def _events(rs: RsyslogReceiver, proto: str) -> list[str]:
    return [f.msg for f in rs.fields_lines() if f.proto == proto and "siemconn_heartbeat" not in f.msg]


def _sent_at(body: dict[str, Any]) -> float:
    """The heartbeat's send time (its `time`, to the second, rounded down)."""
    return datetime.strptime(body["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _all_events_and_quiet_heartbeats(rs: RsyslogReceiver, fake: FakeRux, proto: str, after: float) -> bool:
    """Every expected event arrived, and at least 3 heartbeats were sent after `after`, the last of which
    reports an empty backlog."""
    if not set(expected_payloads(fake)) <= set(received(_events(rs, proto))[0]):
        return False
    beats = [b for b in _heartbeats(rs, proto) if _sent_at(b) >= after]
    return len(beats) >= 3 and beats[-1]["backlog"] == 0


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["TCP", "RELP"])
def test_heartbeats_arrive_at_the_interval_and_stop_while_the_server_is_down(
    tmp_path: Path,
    protocol: str,
    rsyslog_factory: Callable[..., RsyslogReceiver],
    request: pytest.FixtureRequest,
) -> None:
    rs: RsyslogReceiver = rsyslog_factory() if protocol == "TCP" else request.getfixturevalue("relp_receiver")
    proto = "tcp" if protocol == "TCP" else "relp"
    assert isinstance(rs, RelpReceiver) == (protocol == "RELP")
    fake = start_fake(seed_audit=20, seed_detections=150, seed_entity=20)
    server = rs.server_entry("siem1", protocol, heartbeat_seconds=INTERVAL)
    conn = Connector(tmp_path / "c", fake.url, [server], max_backoff_seconds=1, batch_size=50).start()
    try:
        # 1. up: the seeded events, and heartbeats until one reports the backlog drained
        started = time.time()
        wait_for(
            lambda: _all_events_and_quiet_heartbeats(rs, fake, proto, started),
            60,
            "the seeded events and 3 heartbeats, the last with an empty backlog",
        )
        # 2. down: events keep coming from the API and are queued; heartbeats are neither sent nor kept
        stopping = time.time()
        rs.stop()
        stopped = time.time()
        fake.append("detections", 120)
        fake.append("audits", 10)
        wait_for(
            lambda: conn.log_records() and "syslog_server_lost" in conn.output(), 20, "the writer to notice"
        )
        time.sleep(DOWN_SECONDS)
        restarted = time.time()
        rs.start()
        # 3. back: the backlog drains, heartbeats resume
        wait_for(
            lambda: _all_events_and_quiet_heartbeats(rs, fake, proto, restarted + 1),
            90,
            "the backlog and 3 heartbeats after the restart, the last with an empty backlog",
        )
        wait_for(lambda: queue_drained(conn, 1), 30, "siemconn status to show the queue drained")
        assert conn.terminate() == 0
        began = [r for r in conn.log_records() if r.get("event") == "siemconn_started"]
        assert began and began[0]["servers"][0].endswith(f" heartbeat={INTERVAL}s"), began
    finally:
        conn.kill()
        fake.stop()

    beats = _heartbeats(rs, proto)
    times = [_sent_at(b) for b in beats]
    # at the interval: never two within one interval (so no burst after the outage), in order
    assert all(b - a >= INTERVAL for a, b in zip(times, times[1:], strict=False)), times
    before = [t for t in times if t < stopping]
    after = [t for t in times if t >= restarted - 1]
    assert len(before) >= 3 and len(after) >= 3, times
    # none was sent while the receiver was down (a time T stands for a send time in [T, T + 1))
    assert not [t for t in times if t >= stopped and t + 1 <= restarted], (stopped, restarted, times)
    assert len(before) + len(after) == len(beats)

    # the events: each exactly once, heartbeats never counted among them
    counts, _ = received(_events(rs, proto))
    assert summary(expected_payloads(fake), counts) == {
        "expected": len(expected_payloads(fake)),
        "received": len(expected_payloads(fake)),
        "missing": 0,
        "duplicated": 0,
        "unexpected": 0,
    }
    # every delivered event is reported by exactly one heartbeat
    assert sum(b["delivered_since_last"] for b in beats) == len(expected_payloads(fake))

    last = beats[-1]
    assert (last["server"], last["interval_seconds"], last["backlog"]) == ("siem1", INTERVAL, 0)
    assert last["oldest_undelivered_seconds"] == 0.0
    assert (last["quarantined"], last["trimmed"]) == (0, 0)
    assert set(last["streams"]) == {"audit", "detections", "entity_scoring.account", "entity_scoring.host"}
    for stream in last["streams"].values():
        assert stream["last_poll"] is not None and stream["lag_seconds"] >= 0
    assert last["max_lag_seconds"] == max(s["lag_seconds"] for s in last["streams"].values())
    # a heartbeat sent while events were queued for the stopped receiver reports them
    assert any(
        b["backlog"] > 0 and b["oldest_undelivered_seconds"] > 0
        for b in beats
        if _sent_at(b) >= restarted - 1
    )


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["cef", "leef"])
def test_cef_and_leef_heartbeats_through_rsyslog_report_the_quarantine(
    tmp_path: Path, fmt: str, rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    """A page holding one event that is not UTF-8 (quarantined at commit) and two good ones: the good ones
    arrive, and the heartbeats that rsyslog received read as strict CEF / LEEF with the heartbeat's own
    event id and a quarantined count of 1."""
    rs = rsyslog_factory()
    bad = b'{"id": 5, "detection_id": 7, "note": "caf\xe9 \xff end"}'
    good = [json.dumps(event(i)).encode() for i in (4, 6)]
    body = (
        b'{"events": ['
        + b", ".join([good[0], bad, good[1]])
        + b'], "next_checkpoint": 7, "remaining_count": 0}'
    )
    api = PoisonApi({"detections": {0: body}}).start()
    server = rs.server_entry("siem1", "TCP", format=fmt, leef_delimiter="^", heartbeat_seconds=INTERVAL)
    conn = Connector(tmp_path / "c", api.url, [server], schedule="* * * * * *").start()

    def beats() -> list[dict[str, str]]:
        out = []
        for raw in rs.raw_lines():
            if HEARTBEAT_SIGNATURE not in raw:
                continue
            if fmt == "cef":
                cef = cefparse.parse_syslog(raw.encode()).cef
                assert (cef.product, cef.signature) == ("siemconn", HEARTBEAT_SIGNATURE)
                out.append(cef.labelled())
            else:
                leef = leefparse.parse_syslog(raw.encode()).leef
                assert (leef.product, leef.event_id, leef.delimiter) == ("siemconn", HEARTBEAT_SIGNATURE, "^")
                out.append(leef.attributes)
        return out

    try:
        wait_for(
            lambda: any(b["quarantined"] == "1" for b in beats()), 40, "a heartbeat counting the quarantine"
        )
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()
    events = [r for r in rs.raw_lines() if HEARTBEAT_SIGNATURE not in r]
    assert len(events) == 2, events
    last = beats()[-1]
    assert (last["server"], last["backlog"], last["quarantined"], last["trimmed"]) == ("siem1", "0", "1", "0")
    assert json.loads(last["streams"])["detections"]["last_poll"] is not None
