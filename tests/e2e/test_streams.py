"""End-to-end streams and routing: `python -m siemconn run` as a subprocess, the fake tenant over HTTP and
a real rsyslogd. Two servers with different `streams` each get exactly theirs; lockdown changes arrive
exactly once across SIGKILLs between polls and during a poll; a 403 on one stream leaves the others
flowing and `siemconn check` names the role."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.e2e import Connector, expected_payloads, start_fake, wait_until
from support.rsyslog import RsyslogReceiver
from support.snapshots import HEALTH_SECTIONS

from siemconn.devtools.fake_rux import Fault
from siemconn.events import encoder
from siemconn.rux.lockdown import MARKER, UNLOCKED

pytestmark = pytest.mark.e2e

EVERY = "*/2 * * * * *"


def by_app(rs: RsyslogReceiver, app: str) -> list[tuple[str, dict[str, Any]]]:
    """(MSGID = stream, payload) of every message one server sent (told apart by APP-NAME)."""
    return [(f.msgid, json.loads(f.msg[f.msg.index("{") :])) for f in rs.fields_lines() if f.app == app]


def keyed(msgs: list[tuple[str, dict[str, Any]]], stream: str) -> Counter[Any]:
    return Counter(p["id"] for s, p in msgs if s == stream)


def lockdown_changes(msgs: list[tuple[str, dict[str, Any]]]) -> Counter[tuple[str, int, str]]:
    """Each lockdown event as (type, entity_id, kind): kind is "locked", "changed" or "unlocked"."""
    return Counter((p["type"], p["entity_id"], p.get(MARKER, "locked")) for s, p in msgs if s == "lockdown")


def depth_zero(conn: Connector, *names: str) -> bool:
    status = conn.status()
    return all(re.search(rf"^{n}\s+0\s", status, re.M) for n in names)


def test_two_servers_with_different_streams_each_get_exactly_theirs(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_audit=30, seed_detections=120, seed_entity=40, seed_lockdown=3)
    try:
        sched = {s: EVERY for s in ("audit", "detections", "entity_scoring", "health", "lockdown")}
        a = rsyslog.server_entry(
            "siem-a", "TCP", format="rfc5424", app_name="sinkA", streams=["detections", "entity_scoring"]
        )
        b = rsyslog.server_entry(
            "siem-b", "TCP", format="rfc5424", app_name="sinkB", streams=["audit", "lockdown", "health"]
        )
        conn = Connector(tmp_path / "c", fake.url, [a, b], scheduler=sched, page_size=50, batch_size=20)
        expected = expected_payloads(fake)

        def want(stream: str) -> set[int]:
            return {i for (s, i) in expected if s == stream}

        def a_done() -> bool:
            got = by_app(rsyslog, "sinkA")
            return want("detections") <= set(keyed(got, "detections")) and want("entity_scoring") <= set(
                keyed(got, "entity_scoring")
            )

        def b_done(n_lockdown: int) -> bool:
            got = by_app(rsyslog, "sinkB")
            return (
                want("audit") <= set(keyed(got, "audit"))
                and sum(lockdown_changes(got).values()) >= n_lockdown
                and any(s == "health" for s, _ in got)
            )

        conn.start()
        try:
            wait_until(a_done, 60, "server A: every detection and entity event")
            wait_until(lambda: b_done(3), 60, "server B: every audit, the 3 lockdowns, a health event")
            fake.append("detections", 15)
            fake.append("audits", 4)
            first = fake.lockdowns.entries()[0]
            fake.lockdowns.unlock(first["type"], first["entity_id"])
            fake.lockdowns.lock("account", 777, name="AAD:new@corp.example")
            expected = expected_payloads(fake)
            wait_until(a_done, 60, "server A: the new detections")
            wait_until(lambda: b_done(5), 60, "server B: the new audits and both lockdown changes")
            wait_until(lambda: depth_zero(conn, "siem-a", "siem-b"), 30, "both servers acked")
            status = conn.status()
            assert conn.terminate() == 0
        finally:
            conn.kill()
        got_a, got_b = by_app(rsyslog, "sinkA"), by_app(rsyslog, "sinkB")
        # A: exactly detections and entity_scoring, each event exactly once
        assert {s for s, _ in got_a} == {"detections", "entity_scoring"}
        for stream in ("detections", "entity_scoring"):
            c = keyed(got_a, stream)
            assert set(c) == want(stream) and max(c.values()) == 1, stream
        for s, p in got_a:
            assert p == expected[(s, p["id"])]  # the event as the API returned it
        # B: exactly audit, lockdown and health
        assert {s for s, _ in got_b} == {"audit", "lockdown", "health"}
        c = keyed(got_b, "audit")
        assert set(c) == want("audit") and max(c.values()) == 1
        changes = lockdown_changes(got_b)
        assert max(changes.values()) == 1 and sum(changes.values()) == 5
        assert (first["type"], first["entity_id"], UNLOCKED) in changes
        assert ("account", 777, "locked") in changes
        healths = [p for s, p in got_b if s == "health"]
        assert healths and all(set(p) == HEALTH_SECTIONS for p in healths)
        assert re.search(r"^siem-a\s+0\s.*detections, entity_scoring$", status, re.M), status
        assert re.search(r"^siem-b\s+0\s.*audit, health, lockdown$", status, re.M), status
        started = [r for r in conn.log_records() if r.get("event") == "siemconn_started"][0]
        assert started["streams_off"] == []
        assert any("siem-a" in s and "streams=detections,entity_scoring" in s for s in started["servers"])
        # the start line names the event encoder (the C one is optional in the build)
        assert started["encoder"] == ("c + page transcoder" if encoder.C_ENCODER else "ujson")
    finally:
        fake.stop()


def test_lockdown_changes_arrive_exactly_once_across_sigkills(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_lockdown=2)
    try:
        sched = {"audit": None, "detections": None, "entity_scoring": None, "lockdown": "* * * * * *"}
        server = rsyslog.server_entry("siem", "TCP", format="rfc5424")
        conn = Connector(tmp_path / "c", fake.url, [server], scheduler=sched)

        def changes() -> Counter[tuple[str, int, str]]:
            return lockdown_changes([(f.msgid, json.loads(f.msg)) for f in rsyslog.fields_lines()])

        def settled(n: int) -> None:
            wait_until(lambda: sum(changes().values()) >= n, 40, f"{n} lockdown changes")
            wait_until(lambda: depth_zero(conn, "siem"), 30, "the server acked them")

        conn.start()
        try:
            settled(2)
            # 1. SIGKILL between polls; the tenant changes while siemconn is down
            conn.kill()
            seeded = fake.lockdowns.entries()
            fake.lockdowns.unlock(seeded[0]["type"], seeded[0]["entity_id"])
            fake.lockdowns.lock("host", 501, name="k8s-node-7")
            conn.start()
            settled(4)
            # 2. SIGKILL during a poll: the tenant has changed, the poll's request is in flight
            fake.lockdowns.lock("host", 502, name="dc01")
            fake.lockdowns.extend(seeded[1]["type"], seeded[1]["entity_id"], 3600)
            fake.add_fault(Fault(path="lockdown", status=None, delay=4.0))
            wait_until(lambda: fake.state()["faults_pending"] == 0, 20, "a lockdown poll in flight")
            conn.kill()
            assert conn.exit_codes[-1] == -signal.SIGKILL
            conn.start()
            settled(6)
            # 3. and after all that, one more change arrives once
            fake.lockdowns.unlock("host", 501)
            settled(7)
            assert conn.terminate() == 0
            started = [r for r in conn.log_records() if r.get("event") == "siemconn_started"][0]
            assert started["streams_off"] == ["audit", "detections", "entity_scoring", "health"]
            assert started["schedules"] == {"lockdown": "* * * * * *"}
        finally:
            conn.kill()
        got = changes()
        assert max(got.values()) == 1, got
        assert set(got) == {
            (seeded[0]["type"], seeded[0]["entity_id"], "locked"),
            (seeded[1]["type"], seeded[1]["entity_id"], "locked"),
            (seeded[0]["type"], seeded[0]["entity_id"], UNLOCKED),
            ("host", 501, "locked"),
            ("host", 502, "locked"),
            (seeded[1]["type"], seeded[1]["entity_id"], "changed"),
            ("host", 501, UNLOCKED),
        }
    finally:
        fake.stop()


def test_403_on_one_stream_leaves_the_others_flowing_and_check_names_the_role(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(
        seed_audit=20,
        seed_detections=40,
        seed_entity=10,
        seed_lockdown=1,
        roles=["Read-Only"],  # no Auditor: audit (and health) answer 403
    )
    try:
        sched = {"audit": EVERY, "detections": EVERY, "entity_scoring": EVERY, "lockdown": EVERY}
        conn = Connector(
            tmp_path / "c", fake.url, [rsyslog.server_entry("siem", "TCP", format="rfc5424")], scheduler=sched
        )
        check = subprocess.run(
            [sys.executable, "-m", "siemconn", "check", "--config", str(conn.config_path)],
            cwd=conn.workdir,
            env=conn.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 1, check.stdout
        assert "FAILED stream audit: HTTP 403: the API client lacks the Auditor role" in check.stdout
        for ok in ("detections", "entity_scoring.account", "entity_scoring.host", "lockdown"):
            assert f"ok     stream {ok}: HTTP 200" in check.stdout
        det = set(fake.ids("detections"))
        ent = set(fake.ids("entity_scoring", "account")) | set(fake.ids("entity_scoring", "host"))
        conn.start()
        try:

            def got() -> list[tuple[str, dict[str, Any]]]:
                return [(f.msgid, json.loads(f.msg)) for f in rsyslog.fields_lines()]

            wait_until(
                lambda: (
                    det <= set(keyed(got(), "detections"))
                    and ent <= set(keyed(got(), "entity_scoring"))
                    and any(s == "lockdown" for s, _ in got())
                ),
                60,
                "detections, entity scoring and lockdown despite the 403 on audit",
            )
            conn.wait_log("pull_failed_permission_denied", count=2)  # audit keeps failing, alone
            assert conn.alive()
            assert conn.terminate() == 0
        finally:
            conn.kill()
        assert not any(s == "audit" for s, _ in got())
        denied = [r for r in conn.log_records() if r.get("event") == "pull_failed_permission_denied"]
        assert {r["stream"] for r in denied} == {"audit"}
        assert "Auditor role" in denied[0]["error"]
    finally:
        fake.stop()
