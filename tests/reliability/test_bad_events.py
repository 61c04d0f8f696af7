"""Bad input never stops delivery (issue 20, items 1, 2, 12 and the queue files' permissions), end to end:
the service as a subprocess, a scripted hostile API (tests/support/poison_api.py) and a real rsyslogd.

Each test fails on the code before the quarantine: a poison event stopped its stream forever (or
crash-looped the process), string ids with a null checkpoint were never stored, ids going down were
dropped without a word, and queue.db-wal / -shm were created 0644.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.e2e import Connector, payload_of
from support.poison_api import PoisonApi, event
from support.reliability import figure, log_events, status_checkpoints, wait_for
from support.rsyslog import RsyslogReceiver, free_port

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"


def _page(events: list[bytes], nxt: int | None, remaining: int = 0) -> bytes:
    """An answer whose events are given as raw bytes (so one can be nested deep or not UTF-8)."""
    cp = b"null" if nxt is None else str(nxt).encode()
    return (
        b'{"events": ['
        + b", ".join(events)
        + b'], "next_checkpoint": '
        + cp
        + (b', "remaining_count": %d}' % remaining)
    )


def _ev(i: int | str, **fields: Any) -> bytes:
    return json.dumps(event(i, **fields)).encode()


def _ids(rs: RsyslogReceiver) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for line in rs.raw_lines():
        if "{" in line:
            out[payload_of(line).get("id")] += 1
    return out


def _with_metrics(tmp_path: Path, url: str, servers: list[dict[str, Any]]) -> tuple[Connector, int]:
    """A connector (not started) polling every second, and the free port its metrics endpoint will use."""
    mport = free_port()
    conn = Connector(
        tmp_path / "c", url, servers, schedule=EVERY_SECOND, metrics_address=f"127.0.0.1:{mport}"
    )
    return conn, mport


def _metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _cli(conn: Connector, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siemconn", *args, "--config", str(conn.config_path)],
        cwd=conn.workdir,
        env=conn.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


DEEP = 1010
BAD_UTF8 = b'{"id": 5, "detection_id": 7, "note": "caf\xe9 \xff\xfe end"}'


def test_poison_events_are_quarantined_and_the_stream_goes_on(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """Page 1 holds an event nested 1,010 levels deep (parses, but json.dumps raises RecursionError at
    commit); page 2 an event with bytes that are not UTF-8 (the whole body fails to parse). Before: the
    stream re-fetched from=0 forever and nothing after it was ever sent. Now: the good events of both pages
    and the next page are delivered, the two poison events are in the quarantine with their raw bytes,
    counted in metrics, shown by `siemconn status`, exported by `siemconn quarantine export`."""
    head = json.dumps(event(2))[:-1].encode()
    deep_raw = head + b', "x": ' + b'{"a": ' * (DEEP - 1) + b"{}" + b"}" * (DEEP - 1) + b"}"
    api = PoisonApi(
        {
            "detections": {
                0: _page([_ev(1), deep_raw, _ev(3)], 4, remaining=3),
                4: _page([_ev(4), BAD_UTF8, _ev(6)], 7, remaining=0),
            }
        }
    ).start()
    conn, mport = _with_metrics(tmp_path, api.url, [rsyslog.server_entry("tcp1", "TCP")])
    try:
        conn.start()
        wait_for(lambda: {1, 3, 4, 6} <= set(_ids(rsyslog)), 40, "the good events of both pages")
        api.pages["detections"][7] = _page([_ev(7), _ev(8)], 9)  # the stream is not stuck: later events
        wait_for(lambda: {7, 8} <= set(_ids(rsyslog)), 30, "the events after the poison pages")
        assert conn.alive(), conn.output()[-3000:]
        ids = _ids(rsyslog)
        assert set(ids) == {1, 3, 4, 6, 7, 8} and max(ids.values()) == 1, ids
        assert status_checkpoints(conn)["detections"] == 9
        quarantined = {r["reason"]: r for r in log_events(conn, "event_quarantined")}
        assert set(quarantined) == {"too_deep", "invalid_utf8"}, quarantined
        assert quarantined["too_deep"]["event_id"] == "2" and quarantined["invalid_utf8"]["event_id"] == "5"
        assert (
            _metric(mport, "siemconn_events_quarantined_total", stream="detections", reason="too_deep") == 1
        )
        assert (
            _metric(mport, "siemconn_events_quarantined_total", stream="detections", reason="invalid_utf8")
            == 1
        )
        assert log_events(conn, "rux_page_salvaged")
        status = conn.status()
        assert "quarantined events: 2" in status and "invalid_utf8" in status and "too_deep" in status
        assert re.search(r"^detections\s+9\s+2\s", status, re.M), status
        out = tmp_path / "quarantine.jsonl"
        res = _cli(conn, "quarantine", "export", "--output", str(out))
        assert res.returncode == 0, res.stderr
        assert "2 quarantined events exported" in res.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert set(rows) == {2, 5}
        assert rows[2]["raw"].encode() == deep_raw  # the event exactly, re-encoded without recursion
        assert rows[2]["stream"] == "detections" and rows[2]["reason"] == "too_deep"
        assert base64.b64decode(rows[5]["raw_base64"]) == BAD_UTF8  # the bytes exactly as the API sent them
        assert rows[5]["reason"] == "invalid_utf8" and rows[5]["time"].endswith("Z")
        count = _cli(conn, "quarantine", "count")
        assert count.returncode == 0 and count.stdout.startswith("2 quarantined events"), count.stdout
        assert conn.terminate() == 0
        figure("poison_events", {"delivered": sum(ids.values()), "quarantined": len(rows), "lost": 0})
    finally:
        conn.kill()
        api.stop()


BAD_TIMES = ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59")


def test_event_time_that_cannot_be_shown_in_utc_never_kills_a_writer(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """rfc5424 with `timestamp: "event"`: an event_timestamp of year 1 at +05:00 or year 9999 at -23:59
    raised OverflowError in the formatter, the writer pool died, the process exited 1 and every restart
    died the same way (the event stays queued), so the other servers stopped too. Now both are sent with
    the send time as TIMESTAMP and the payload intact, counted and logged; the other server gets them."""
    evs = [_ev(1), _ev(2, event_timestamp=BAD_TIMES[0]), _ev(3, event_timestamp=BAD_TIMES[1]), _ev(4)]
    api = PoisonApi({"detections": {0: _page(evs, 5)}}).start()
    conn, mport = _with_metrics(
        tmp_path,
        api.url,
        [
            rsyslog.server_entry("event_ts", "TCP", format="rfc5424", timestamp="event"),
            rsyslog.server_entry("legacy", "TCP"),
        ],
    )
    try:
        conn.start()
        wait_for(lambda: sum(_ids(rsyslog).values()) >= 8, 40, "4 events on each of the 2 servers")
        time.sleep(1.5)  # a crash would show now
        assert conn.alive(), conn.output()[-3000:]
        ids = _ids(rsyslog)
        assert ids == Counter({1: 2, 2: 2, 3: 2, 4: 2}), ids
        by_id = {
            payload_of(line)["id"]: line
            for line in rsyslog.raw_lines()
            if line.startswith("<14>1 ") and "{" in line
        }
        assert by_id[1].split(" ")[1] == "2024-08-13T20:43:59Z"  # a usable event time is used
        for i, bad in ((2, BAD_TIMES[0]), (3, BAD_TIMES[1])):
            sent = by_id[i].split(" ")[1]
            assert sent.startswith(time.strftime("%Y-", time.gmtime())), sent  # the send time
            assert payload_of(by_id[i])["event_timestamp"] == bad  # the payload is unchanged
        assert _metric(mport, "siemconn_format_fallbacks_total", server="event_ts") == 2
        warned = log_events(conn, "syslog_event_time_unusable")
        assert warned and "OverflowError" in warned[0]["last_problem"], warned
        assert not log_events(conn, "writer pool failed")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()


def test_string_ids_with_a_null_checkpoint_on_a_first_run_are_queued(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """A first run whose answer has string ids and `next_checkpoint: null`: there is no checkpoint to store,
    and the old code then dropped the events without a word. Now they are queued and sent, with a warning
    naming the reason; the stream keeps no checkpoint (the next run is again a first run)."""
    evs = [json.dumps({"id": "a-1", "action": "login"}).encode(), json.dumps({"id": "a-2"}).encode()]
    api = PoisonApi({"audit": {0: _page(evs, None)}}).start()
    conn = Connector(tmp_path / "c", api.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    try:
        conn.start()
        wait_for(lambda: {"a-1", "a-2"} <= set(_ids(rsyslog)), 40, "the string-id events")
        warned = log_events(conn, "rux_checkpoint_unknown")
        assert warned and warned[0]["stream"] == "audit" and warned[0]["events"] == 2
        assert status_checkpoints(conn).get("audit") is None
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()


def test_ids_that_go_down_are_counted_and_logged_as_duplicates(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """Page 1 has ids 10 and 11; page 2 (from=12) answers ids 5, 6 and 13. 5 and 6 are at or below the
    highest id already queued: they were dropped silently; now they are counted in
    siemconn_events_duplicate_total and logged with the count and the id range."""
    api = PoisonApi(
        {"detections": {0: _page([_ev(10), _ev(11)], 12), 12: _page([_ev(5), _ev(6), _ev(13)], 14)}}
    ).start()
    conn, mport = _with_metrics(tmp_path, api.url, [rsyslog.server_entry("tcp1", "TCP")])
    try:
        conn.start()
        wait_for(lambda: {10, 11, 13} <= set(_ids(rsyslog)), 40, "the events")
        wait_for(lambda: bool(log_events(conn, "duplicate_events_dropped")), 10, "the duplicate log line")
        [dup] = log_events(conn, "duplicate_events_dropped")[:1]
        assert (dup["stream"], dup["count"], dup["first_id"], dup["last_id"]) == ("detections", 2, 5, 6)
        assert dup["high_water_mark"] == 11
        assert _metric(mport, "siemconn_events_duplicate_total", stream="detections") == 2
        assert set(_ids(rsyslog)) == {10, 11, 13}
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()


def test_queue_files_are_private_whatever_the_umask(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    """With umask 022, SQLite created queue.db-wal and queue.db-shm 0644 (they hold event payloads) before
    the database file was tightened. Now queue.db, -wal and -shm are 0600 while the service runs."""
    api = PoisonApi({"detections": {0: _page([_ev(1)], 2)}}).start()
    conn = Connector(tmp_path / "c", api.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    old = os.umask(0o022)
    try:
        conn.start()
    finally:
        os.umask(old)
    try:
        wait_for(lambda: 1 in _ids(rsyslog), 40, "the event")
        data = Path(conn.config["configuration"]["data_dir"])
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in data.glob("queue.db*")}
        assert {"queue.db", "queue.db-wal", "queue.db-shm"} <= set(modes), modes
        assert set(modes.values()) == {"0o600"}, modes
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()


def test_a_queue_written_by_schema_version_1_keeps_its_backlog(
    tmp_path: Path, rsyslog: RsyslogReceiver
) -> None:
    """A queue.db of schema version 1 (before the quarantine) with 5 undelivered events: the service opens
    it, migrates it to the current version in place and delivers the backlog; nothing is re-fetched."""
    import asyncio
    import sqlite3

    from siemconn.queue import DurableQueue
    from siemconn.queue.schema import SCHEMA_VERSION

    api = PoisonApi({}).start()
    conn = Connector(tmp_path / "c", api.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    data = Path(conn.config["configuration"]["data_dir"])

    async def backlog() -> None:
        q = await DurableQueue.open(data, ["tcp1"])
        await q.commit_page("detections", [event(i) for i in range(1, 6)], 6)
        await q.close()

    asyncio.run(backlog())
    db = sqlite3.connect(data / "queue.db")
    db.execute("DROP TABLE quarantine")  # exactly what version 1 had: this version's file minus the table
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    try:
        conn.start()
        wait_for(lambda: set(_ids(rsyslog)) >= {1, 2, 3, 4, 5}, 40, "the version 1 backlog")
        assert log_events(conn, "queue_schema_migrated")[0]["from_version"] == 1
        assert status_checkpoints(conn)["detections"] == 6
        assert api.froms("detections")[0] == 6  # the checkpoint survived: no re-fetch from the start
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()
    db = sqlite3.connect(data / "queue.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert max(_ids(rsyslog).values()) == 1
