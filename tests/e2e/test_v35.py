"""End-to-end RUX API v3.5: `python -m siemconn run` as a subprocess, the fake tenant over HTTP and a
real rsyslogd. v3.5 detections, regular and detailed, arrive exactly once (and in CEF with the detailed
fields mapped); a queue filled under v3.4 continues under v3.5 from its checkpoints, losing and
repeating nothing; ordering=id keeps paging from a checkpoint complete where time-ordered pages skip ids.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import cefparse
from support.e2e import Connector, expected_payloads, start_fake, wait_until
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port

pytestmark = pytest.mark.e2e

EVERY = "*/2 * * * * *"
THREE = {"audit": EVERY, "detections": EVERY, "entity_scoring": EVERY}


def by_app(rs: RsyslogReceiver, app: str) -> list[tuple[str, dict[str, Any]]]:
    """(MSGID = stream, payload) of every message one connector sent (told apart by APP-NAME)."""
    return [(f.msgid, json.loads(f.msg[f.msg.index("{") :])) for f in rs.fields_lines() if f.app == app]


def counts(msgs: list[tuple[str, dict[str, Any]]]) -> Counter[tuple[str, int]]:
    return Counter((s, p["id"]) for s, p in msgs)


def api_requests(fake: FakeRux, endpoint: str) -> list[Any]:
    """The fake's record of every request to one events endpoint, any version."""
    return [r for r in fake.requests if r.path.startswith("/api/") and r.path.endswith(endpoint)]


@pytest.mark.parametrize("size", ["regular", "detailed"])
def test_v35_detections_arrive_exactly_once(
    tmp_path: Path, rsyslog_factory: Callable[..., RsyslogReceiver], size: str
) -> None:
    fake = start_fake(seed_audit=20, seed_detections=150, seed_entity=30)
    json_rs, cef_rs = rsyslog_factory(), rsyslog_factory()
    servers = [
        json_rs.server_entry("siem", "TCP", format="rfc5424", app_name="v35"),
        cef_rs.server_entry("arcsight", "TCP", format="cef"),
    ]
    try:
        conn = Connector(
            tmp_path / "c",
            fake.url,
            servers,
            scheduler=THREE,
            api_version="v3.5",
            detection_size=size,
            page_size=40,
        )

        def done() -> bool:
            return set(expected_payloads(fake, "v3.5", size)) <= set(counts(by_app(json_rs, "v35")))

        conn.start()
        try:
            wait_until(done, 60, "every seeded event")
            fake.append("detections", 25)
            fake.append("audits", 3)
            wait_until(done, 60, "the appended events")
            n_det = len(fake.ids("detections"))
            wait_until(lambda: len(cef_rs.raw_lines()) >= len(expected_payloads(fake)), 30, "the CEF copy")
            assert conn.terminate() == 0
        finally:
            conn.kill()
        expected = expected_payloads(fake, "v3.5", size)
        got = by_app(json_rs, "v35")
        c = counts(got)
        assert set(c) == set(expected) and max(c.values()) == 1  # exactly once
        for s, p in got:
            assert p == expected[(s, p["id"])]  # the event as the API returned it
        detections = [p for s, p in got if s == "detections"]
        assert len(detections) == n_det
        assert all(("summary" in p) == (size == "detailed") for p in detections)
        # what was asked: detections at v3.5 in id order with the size; the rest at v3.4
        det = api_requests(fake, "/events/detections")
        assert det and all(r.path == "/api/v3.5/events/detections" for r in det)
        assert all(r.params["ordering"] == "id" and r.params["size"] == size for r in det)
        rest = api_requests(fake, "/events/audits") + api_requests(fake, "/events/entity_scoring")
        assert rest and all(r.path.startswith("/api/v3.4/") and "size" not in r.params for r in rest)
        started = next(r for r in conn.log_records() if r.get("event") == "siemconn_started")
        assert started["api"].endswith(f"(v3.5: detections at v3.5 size={size}, other streams at v3.4)")
    finally:
        fake.stop()
    # the CEF copy: every event once; detailed detections carry the other side of the activity
    cefs = [cefparse.parse_syslog(line.encode()).cef for line in cef_rs.raw_lines()]
    assert len(cefs) == len(expected)
    by_id = {int(x.extension["externalId"]): x.labelled() for x in cefs if x.product == "RUX Detections"}
    assert set(by_id) == {i for s, i in expected if s == "detections"}
    dst_named = 0
    for (s, i), ev in expected.items():
        if s != "detections":
            continue
        got_cef = by_id[i]
        assert got_cef.get("investigationStatus") == ev.get("status")
        for key, ref in (("dhost", "dst_host"), ("duser", "dst_account")):
            want = ev[ref]["name"] if isinstance(ev.get(ref), dict) else None
            assert got_cef.get(key) == want, (i, key)
            dst_named += want is not None
    assert (dst_named > 0) == (size == "detailed")


def test_switch_from_v34_to_v35_on_an_existing_queue(
    tmp_path: Path, rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    """A queue filled under v3.4, then a restart with api_version v3.5 and detection_size detailed:
    every stream continues from its stored checkpoint (no lookback, no from=0), nothing is lost and
    nothing repeated, and what was pulled after the switch is the v3.5 detailed event. Server "late"
    is unreachable during the v3.4 run, so its whole v3.4 backlog is still queued at the switch."""
    fake = start_fake(seed_audit=15, seed_detections=120, seed_entity=30)
    live, late = rsyslog_factory(), rsyslog_factory()
    try:
        entry = live.server_entry("siem", "TCP", format="rfc5424", app_name="sw")
        late_entry = late.server_entry("late", "TCP", format="rfc5424", app_name="late")
        closed = late_entry | {"server_port": free_port()}  # nothing listens there in the first run
        conn = Connector(
            tmp_path / "c", fake.url, [entry, closed], scheduler=THREE, api_version="v3.4", page_size=25
        )

        def delivered(rs: RsyslogReceiver, app: str) -> set[tuple[str, int]]:
            return set(counts(by_app(rs, app)))

        def both_have_everything() -> bool:
            want = set(expected_payloads(fake))
            return want <= delivered(live, "sw") and want <= delivered(late, "late")

        conn.start()
        try:
            wait_until(lambda: set(expected_payloads(fake, "v3.4")) <= delivered(live, "sw"), 60, "v3.4 run")
            fake.append("detections", 30)  # arrives while the v3.4 run polls
            time.sleep(1)
            assert conn.terminate() == 0
        finally:
            conn.kill()
        assert not late.raw_lines()
        before = len(fake.requests)
        v34_heads = fake.heads()
        fake.append("detections", 40)  # while the service is down
        fake.append("audits", 5)
        fake.append("entity_scoring", 12)
        conn.config["configuration"] |= {"api_version": "v3.5", "detection_size": "detailed"}
        conn.config["configuration"]["server"] = [entry, late_entry]
        conn.config_path.write_text(json.dumps(conn.config, indent=2))
        conn.start()
        try:
            wait_until(both_have_everything, 60, "v3.5 run: both servers")
            fake.append("detections", 10)
            wait_until(both_have_everything, 60, "v3.5 run: both servers, the new detections")
            assert conn.terminate() == 0
        finally:
            conn.kill()
        after = list(fake.requests)[before:]
    finally:
        fake.stop()
    # the restart continued from the stored checkpoints, at the new version
    first: dict[str, Any] = {}
    for r in after:
        if r.path.startswith("/api/"):
            first.setdefault(r.path + r.params.get("type", ""), r)
    det = first["/api/v3.5/events/detections"]
    assert "event_timestamp_gte" not in det.params and int(det.params["from"]) > 1
    assert det.params["size"] == "detailed" and det.params["ordering"] == "id"
    for path, key in (
        ("/api/v3.4/events/audits", "audit"),
        ("/api/v3.4/events/entity_scoringaccount", "entity_scoring.account"),
        ("/api/v3.4/events/entity_scoringhost", "entity_scoring.host"),
    ):
        assert "event_timestamp_gte" not in first[path].params, path
        assert int(first[path].params["from"]) >= (v34_heads[key] or 0) > 0, path
    assert not any(r.path.startswith("/api/v3.4/events/detections") for r in after)
    switched = int(det.params["from"])
    regular, detailed = expected_payloads(fake, "v3.4"), expected_payloads(fake, "v3.5", "detailed")
    for rs, app in ((live, "sw"), (late, "late")):
        got = by_app(rs, app)
        c = counts(got)
        assert set(c) == set(regular) and max(c.values()) == 1, app  # nothing lost, nothing repeated
        # each detection is the document of the version it was pulled with
        for s, p in got:
            if s == "detections":
                want = detailed if p["id"] >= switched else regular
                assert p == want[(s, p["id"])], (app, p["id"])
            else:
                assert p == regular[(s, p["id"])], app
        assert any(p["id"] >= switched for s, p in got if s == "detections")
        assert any(p["id"] < switched for s, p in got if s == "detections")


def test_id_ordering_pages_past_late_events(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    """A tenant that orders pages by event_timestamp (the documented default) over ids whose
    timestamps are out of order: v3.4 pages skip ids, because next_checkpoint is the page's largest id
    + 1; v3.5 asks for ordering=id and delivers every event exactly once."""
    fake = start_fake(default_ordering="event_timestamp")
    t = time.time() - 3600
    fake.append("detections", 60, timestamps=[t + (i * 37) % 60 for i in range(60)])  # ids 1..60
    sched = {"audit": None, "detections": EVERY, "entity_scoring": None}
    try:
        conns = [
            Connector(
                tmp_path / v,
                fake.url,
                [rsyslog.server_entry("siem", "TCP", format="rfc5424", app_name=v.replace(".", ""))],
                scheduler=sched,
                api_version=v,
                page_size=7,
            )
            for v in ("v3.4", "v3.5")
        ]
        for conn in conns:
            conn.start()
        try:
            wait_until(lambda: len(counts(by_app(rsyslog, "v35"))) >= 60, 60, "v3.5: every event")
            wait_until(
                lambda: any(
                    r.params.get("from") == "61" for r in api_requests(fake, "v3.4/events/detections")
                ),
                60,
                "v3.4 at the head",
            )
            time.sleep(1)
            for conn in conns:
                assert conn.terminate() == 0
        finally:
            for conn in conns:
                conn.kill()
    finally:
        fake.stop()
    v35 = counts(by_app(rsyslog, "v35"))
    assert set(v35) == {("detections", i) for i in range(1, 61)} and max(v35.values()) == 1
    v34 = counts(by_app(rsyslog, "v34"))
    assert len(v34) < 60  # what ordering=id prevents
