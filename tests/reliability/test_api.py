"""Reliability: API-side faults and bad API responses, end to end (service subprocess, fake RUX, rsyslogd)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from support.e2e import Connector, start_fake
from support.reliability import (
    assert_no_secrets,
    delivered,
    figure,
    log_events,
    status_checkpoints,
    tally,
    variants,
    wait_for,
)
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux, Fault

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"
PULL_FAILED = "pull_failed"
SKIPPED = "pull_skipped"


def _assert_no_overlap(fake: FakeRux) -> int:
    """Per stream (and entity type), the `from` of successive answered requests never goes backwards.

    Two overlapping pulls of one stream would both start from the stored checkpoint while the other one is
    further ahead, so a `from` lower than an earlier one would show up. Returns the requests checked."""
    last: dict[tuple[str, str | None], int] = defaultdict(int)
    n = 0
    for r in list(fake.requests):
        if "/events/" not in r.path or r.status != 200 or "from" not in r.params:
            continue
        key = (r.path, r.params.get("type"))
        frm = int(r.params["from"])
        assert frm >= last[key], f"overlapping pulls: {key} from={frm} after {last[key]}"
        last[key] = frm
        n += 1
    return n


def _start_tcp1(tmp_path: Path, fake: FakeRux, rs: RsyslogReceiver, **settings: Any) -> Connector:
    """The connector under test, started: one TCP server "tcp1", a pull every second, `settings`."""
    return Connector(
        tmp_path / "c", fake.url, [rs.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND, **settings
    ).start()


def _phase(conn: Connector, fake: FakeRux, rs: RsyslogReceiver, *faults: Fault, timeout: float = 60) -> None:
    """Inject `faults`, add new events, and wait until the service delivered everything without help."""
    fake.add_fault(*faults)
    fake.append("detections", 120)
    fake.append("audits", 10)
    fake.append("entity_scoring", 10)
    wait_for(lambda: delivered(rs, fake, "tcp"), timeout, f"recovery from {faults[0]}")
    assert conn.alive(), conn.output()[-2000:]


@pytest.mark.parametrize("rounds", variants(1, 5))
def test_api_faults_recover_without_intervention(
    tmp_path: Path, rsyslog: RsyslogReceiver, rounds: int
) -> None:
    """429 storms with Retry-After, 5xx bursts (JSON and HTML), dropped connections, an API slower than the
    cron period: every event delivered once, no overlapping pulls, the process never needs a restart."""
    fake = start_fake(seed_detections=400, seed_audit=20, seed_entity=40)
    try:
        conn = _start_tcp1(tmp_path, fake, rsyslog, page_size=50)
        try:
            wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
            for _ in range(rounds):
                # a 429 storm, longer than api_max_tries (3): the run gives up, the next tick continues
                _phase(conn, fake, rsyslog, Fault(path="events", status=429, retry_after=0.5, count=8))
                # 5xx bursts mid-paging, some with an HTML body (a proxy error page)
                _phase(
                    conn,
                    fake,
                    rsyslog,
                    Fault(path="detections", status=503, count=2, skip=1),
                    Fault(path="events", status=502, count=2, html=True),
                    Fault(path="audits", status=500, count=1),
                )
                # connections dropped without an answer, on the API and on the token endpoint
                _phase(
                    conn,
                    fake,
                    rsyslog,
                    Fault(path="detections", status=None, drop=True, count=3, skip=1),
                    Fault(path="entity_scoring", status=None, drop=True, count=2),
                )
                # every detections request slower (2.2 s) than the cron period (1 s)
                _phase(conn, fake, rsyslog, Fault(path="detections", status=None, delay=2.2, count=2))
            assert conn.terminate() == 0
        finally:
            conn.kill()
        s = tally(rsyslog, fake, "tcp")
        checked = _assert_no_overlap(fake)
        skipped = log_events(conn, SKIPPED)
        figure(
            f"api_faults[{rounds}x]",
            {
                **s,
                "requests_429": fake.count_requests("/events/", 429),
                "requests_5xx": sum(fake.count_requests("/events/", c) for c in (500, 502, 503)),
                "requests_dropped": fake.count_requests("/events/", 0),
                "pulls_skipped": len(skipped),
                "from_checked": checked,
                "pull_failed_logged": len(log_events(conn, PULL_FAILED)),
            },
        )
        assert s["missing"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s
        assert skipped and any(r["stream"] == "detections" for r in skipped)
        assert fake.count_requests("/events/", 429) >= 8 and fake.count_requests("/events/", 0) >= 5
        assert conn.exit_codes == [0] and conn.runs == 1
        assert_no_secrets(conn, fake)
    finally:
        fake.stop()


@pytest.mark.parametrize("rounds", variants(1, 5))
def test_token_faults_recover_without_intervention(
    tmp_path: Path, rsyslog: RsyslogReceiver, rounds: int
) -> None:
    """A token that expires mid-paging, a 401 mid-paging, the refresh token rejected (400 and 401): the
    client gets a new token by itself; no event lost or duplicated; no token or secret in any log (DEBUG
    level)."""
    fake = start_fake(
        seed_detections=1500,
        token_expires_in=3,  # renewed (refresh grant) every few seconds, mid-paging
        refresh_expires_in=3600,
    )
    try:
        conn = _start_tcp1(tmp_path, fake, rsyslog, page_size=20, log_level="DEBUG")
        try:
            wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, "the seeded events across token renewals")
            for _ in range(rounds):
                # the access token rejected in the middle of paging (revoked server-side)
                fake.append("detections", 300)
                _phase(conn, fake, rsyslog, Fault(path="detections", status=401, skip=3, count=1))
                # refresh grants rejected: the client falls back to client credentials
                fake.configure(reject_refresh=400)
                fake.expire_tokens()
                _phase(conn, fake, rsyslog, Fault(path="detections", status=None, delay=0.1, count=1))
                fake.configure(reject_refresh=401)
                fake.revoke_tokens()
                _phase(conn, fake, rsyslog, Fault(path="detections", status=None, delay=0.1, count=1))
                fake.configure(reject_refresh=None)
            status_text = conn.status()
            assert conn.terminate() == 0
        finally:
            conn.kill()
        s = tally(rsyslog, fake, "tcp")
        st = fake.state()["tokens"]
        figure(f"token_faults[{rounds}x]", {**s, **st, "tokens_checked": len(fake.issued_tokens())})
        assert s["missing"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s
        assert st["refreshed"] >= 1 and st["refresh_rejected"] >= 1 and st["issued"] >= 2
        assert conn.exit_codes == [0]
        assert assert_no_secrets(conn, fake, status_text) >= 4
    finally:
        fake.stop()


BAD_BODIES = [
    pytest.param("<html><body>502 Bad Gateway</body></html>", "text/html", "body is not JSON", id="not-json"),
    pytest.param('"maintenance"', "application/json", "got a JSON str", id="not-an-object"),
    pytest.param(
        '{"next_checkpoint": 5, "remaining_count": 0}', "application/json", "'events'", id="no-events"
    ),
    pytest.param(
        '{"events": {"a": [], "b": []}, "next_checkpoint": 12, "remaining_count": 0}',
        "application/json",
        "'events' is a dict",
        id="two-candidate-lists",
    ),
]


def test_bad_api_responses_keep_checkpoint_and_process(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    """Bodies that are not JSON, not an object or array, or hold no list of events: a clear
    error naming the stream, the checkpoint does not move (`siemconn status`), the process keeps running,
    and the next tick succeeds once the API answers properly again."""
    fake = start_fake(seed_detections=50)
    try:
        conn = _start_tcp1(tmp_path, fake, rsyslog)
        try:
            wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
            for p in BAD_BODIES:
                body, ctype, expect = p.values
                assert isinstance(body, str) and isinstance(ctype, str)
                before = status_checkpoints(conn)["detections"]
                errors_before = len(log_events(conn, PULL_FAILED))
                fake.add_fault(
                    Fault(path="detections", status=200, body=body, content_type=ctype, count=10**6)
                )
                fake.append("detections", 7)

                def more_errors(n: int = errors_before) -> bool:
                    return len(log_events(conn, PULL_FAILED)) > n

                wait_for(more_errors, 30, f"errors ({p.id})")
                errs = log_events(conn, PULL_FAILED)[errors_before:]
                assert all(e["stream"] == "detections" and expect in e["error"] for e in errs), (p.id, errs)
                assert "checkpoint kept" in errs[0]["error"]
                assert status_checkpoints(conn)["detections"] == before, p.id
                assert conn.alive()
                fake.clear_faults()
                wait_for(lambda: delivered(rsyslog, fake, "tcp"), 30, f"the next tick after {p.id}")
                assert status_checkpoints(conn)["detections"] == fake.heads()["detections"]
            assert conn.terminate() == 0
        finally:
            conn.kill()
        s = tally(rsyslog, fake, "tcp")
        figure("bad_api_responses", {**s, "pull_failed_logged": len(log_events(conn, PULL_FAILED))})
        assert s["missing"] == 0 and s["duplicated"] == 0, s
        assert_no_secrets(conn, fake)
    finally:
        fake.stop()
