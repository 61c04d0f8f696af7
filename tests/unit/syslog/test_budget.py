"""The size budget (`max_message_size` on every transport) and the `oversize` policy (issue 26).

Against a real rsyslogd at its DEFAULT limits (8,096 bytes: maxMessageSize for imtcp, maxDataSize for
imrelp), over imtcp with LF framing, imtcp with octet counting and imrelp, in legacy, CEF and LEEF: every
event the fake tenant's generator makes (plus events over 64 KB) arrives as one whole, parseable message,
each trimmed one with its marker, and the quarantine gives back each oversize event's stored text exactly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support import cefparse, leefparse
from support.configs import configuration
from support.metricvalue import metric_value
from support.queues import drain
from support.rsyslog import DefaultLimitsReceiver, imrelp_available, rsyslog_available
from support.syslogparse import parse, unframe

from siemconn.commands.render import render_status
from siemconn.config import ServerConfig
from siemconn.devtools.events import EventFactory
from siemconn.devtools.harness import config_skeleton, wait_until_async
from siemconn.events.rejected import OVERSIZE
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue
from siemconn.queue.quarantine import export_row
from siemconn.queue.status import read_quarantine, read_status
from siemconn.syslog.budget import SIEM_MARKER_KEY, Oversizer, message_limit
from siemconn.syslog.format import Formatter
from siemconn.syslog.memqueue import MemQueue, cursor_at
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.trim import MARKER, is_protected, trim_event

NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)
BUDGET = 8000
RSYSLOG_DEFAULT_MAX = (
    8096  # measured: rsyslog 8.2302 keeps 8,096 bytes of a message, LF or octet count excluded
)


def server(**kw: Any) -> ServerConfig:
    entry: dict[str, Any] = {
        "name": "s",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(entry | kw)


# --- configuration and counting ------------------------------------------------------------------


def test_defaults_keep_the_behaviour_before_budgets() -> None:
    for protocol in ("TCP", "TLS", "RELP"):
        s = server(server_protocol=protocol)
        assert s.message_budget is None and message_limit(s) is None  # no limit
    udp = server(server_protocol="UDP")
    assert udp.message_budget == 65507 and udp.oversize_policy == "truncate"
    assert server(max_message_size=8000).oversize_policy == "trim"  # TCP/TLS/RELP with a budget


def test_udp_oversize_is_a_synonym_of_oversize() -> None:
    assert server(server_protocol="UDP", udp_oversize="drop").oversize_policy == "drop"
    assert server(udp_oversize="drop", max_message_size=8000, oversize="drop").oversize_policy == "drop"
    assert server(udp_oversize="drop").message_budget is None  # accepted as before (it has no effect)
    assert server(server_protocol="UDP", oversize="trim").oversize_policy == "trim"
    with pytest.raises(ValidationError, match=r"oversize 'trim' and udp_oversize 'drop' disagree"):
        server(oversize="trim", udp_oversize="drop")
    with pytest.raises(ValidationError, match=r"oversize"):
        server(oversize="cut")
    with pytest.raises(
        ValidationError, match=r"oversize 'trim' has no effect without a size budget.*e\.g\. 8000"
    ):
        server(oversize="trim")  # TCP without max_message_size


def test_budget_counts_the_whole_message_with_its_framing() -> None:
    assert message_limit(server(max_message_size=8000)) == 7999  # LF
    s = server(max_message_size=8000, framing="octet-counting")
    n = message_limit(s)
    assert n == 7995 and n + len(f"{n} ") == 8000
    assert message_limit(server(max_message_size=8000, server_protocol="RELP")) == 8000
    assert message_limit(server(max_message_size=8000, server_protocol="UDP")) == 8000
    assert message_limit(server(max_message_size=1000, framing="octet-counting")) == 996  # 996 + "996 "


# --- trimming -------------------------------------------------------------------------------------


def _big_detection(n_hosts: int) -> dict[str, Any]:
    ev = EventFactory(seed=5, big_every=1).make("detections", 7, 1.7e9).doc
    ev["detail"]["src_hosts"] = [
        {"id": i, "name": f"h\u00f4te-{i:05d}.corp", "ip": "10.0.0.1"} for i in range(n_hosts)
    ]
    ev["summary"] = {"description": "s" * 3000}
    return ev


def test_trim_follows_the_documented_order_and_keeps_correlation_fields() -> None:
    ev = _big_detection(400)
    ev["entity_uid"] = "u" * 3000  # large, but a correlation field
    ev["notes_blob"] = "n" * 5000  # no bulk rule: removed as the largest remaining value
    s = server(max_message_size=BUDGET)
    formatter = Formatter(s)
    payload = json.dumps(ev).encode()
    msg = formatter.format_bytes(payload, "detections", NOW)
    fitted = Oversizer(s, formatter).fit(msg, payload, "detections", NOW)
    assert fitted.action == "trimmed" and fitted.message is not None
    assert fitted.removed[:2] == ("summary", "detail.src_hosts")  # low-value bulk first, in BULK order
    assert "entity_uid" not in fitted.removed and "notes_blob" in fitted.removed
    assert fitted.original == len(msg) + 1 and fitted.sent == len(fitted.message) + 1 <= BUDGET
    got = json.loads(parse(fitted.message, "legacy").payload)
    assert got[MARKER] == {"bytes": len(msg) + 1, "fields": list(fitted.removed)}
    assert list(got)[-1] == MARKER  # the marker is the last member
    assert got == _expected_trimmed(ev, got[MARKER])
    for key in ("id", "detection_id", "entity_id", "type", "category", "threat", "certainty", "severity",
                "event_timestamp", "url", "entity_uid", "detection_href", "detection_type"):  # fmt: skip
        assert got[key] == ev[key] and is_protected(key)


def test_an_event_that_cannot_fit_is_not_trimmed() -> None:
    ev = {"id": 1, "event_timestamp": "2023-11-02T00:00:00Z", "username": "u" * 9000, "x": "y" * 100}

    def render(e: dict[str, Any]) -> bytes:
        return json.dumps(e).encode()

    assert trim_event(ev, "audit", render, BUDGET, 9999) is None
    s = server(max_message_size=BUDGET)
    payload = json.dumps(ev).encode()
    msg = Formatter(s).format_bytes(payload, "audit", NOW)
    fitted = Oversizer(s, Formatter(s)).fit(msg, payload, "audit", NOW)
    assert fitted.action == "unfittable" and fitted.message is None and fitted.sent == 0


_KV = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\[[^\]]*\]|\S+)")


def log_records(out: str, event: str) -> list[dict[str, str]]:
    """The key=value fields of each console log line of `event` (quotes stripped)."""
    return [
        {k: v.strip("'\"") for k, v in _KV.findall(line)} for line in out.splitlines() if f" {event} " in line
    ]


def _expected_trimmed(stored: dict[str, Any], marker: dict[str, Any]) -> dict[str, Any]:
    """`stored` with the marker's fields removed and the marker added: what a trimmed message must carry."""
    out = copy.deepcopy(stored)
    for path in marker["fields"]:
        head, _, member = path.partition(".")
        if member:
            del out[head][member]
        else:
            del out[head]
    out[MARKER] = marker
    return out


async def test_events_under_the_budget_give_the_same_bytes_and_chunks(tmp_path: Path) -> None:
    """The check adds nothing for messages under the budget: same bytes, still one chunk per page slice."""
    q = await DurableQueue.open(tmp_path / "q", ["a", "b"])
    try:
        f = EventFactory(seed=2, big_every=0)
        await q.commit_page("audit", [f.make("audits", i, 1.7e9).doc for i in range(1, 40)], 1)
        await q.commit_page("detections", [f.make("detections", i, 1.7e9).doc for i in range(1, 40)], 1)
        batch = await q.read_batch("a", 100)
        assert batch is not None
        plain, budgeted = server(), server(max_message_size=BUDGET)
        pools = [
            WriterPool([s], q, configuration([s]), tmp_path, wall_clock=lambda: NOW)
            for s in (plain, budgeted)
        ]
        a, b = (p.writer("s").prepare(batch) for p in pools)
    finally:
        await q.close()
    assert a.frames == b.frames and len(b.frames) == len(batch.segments) == 2
    assert b.oversize is None and b.sent == 78


# --- real rsyslogd at its default limits ----------------------------------------------------------


@pytest.fixture
def rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultLimitsReceiver]:
    if not rsyslog_available() or not imrelp_available():
        pytest.skip("rsyslogd with imrelp is not installed")
    r = DefaultLimitsReceiver(tmp_path_factory.mktemp("rsyslog-defaults"))
    r.start()
    yield r
    r.stop()


CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"  # every C0 control and DEL, NUL first


def with_controls(event: dict[str, Any]) -> dict[str, Any]:
    """The event with every C0 control and DEL appended to its top-level text values (not its times or
    ids): each must still arrive as one record, in CEF and LEEF too."""
    for key, value in list(event.items()):
        if isinstance(value, str) and not any(w in key for w in ("time", "id", "url", "date")):
            event[key] = value + CONTROLS
    return event


def tenant_events() -> dict[str, list[dict[str, Any]]]:
    """Every size the fake tenant makes (one big event in ten), plus events over 64 KB in three streams;
    one event in five carries every control character in its text values."""
    f = EventFactory(seed=26, big_every=10)

    def make(stream: str, first: int, i: int) -> dict[str, Any]:
        doc = f.make(stream, first + i, 1.7e9 + i).doc
        return with_controls(doc) if i % 5 == 0 else doc

    out: dict[str, list[dict[str, Any]]] = {
        "audit": [make("audits", 1000, i) for i in range(60)],
        "detections": [make("detections", 2000, i) for i in range(60)],
        "entity_scoring": [make("entity_scoring", 3000, i) for i in range(60)],
    }
    huge = _big_detection(1300)
    huge["id"] = 2999
    out["detections"].append(huge)
    audit = f.make("audits", 1999, 1.7e9).doc
    audit["event_data"] = {
        "rules": [{"name": f"r\u00e8gle {i}", "ips": ["10.0.0.1"] * 40} for i in range(140)]
    }
    out["audit"].append(audit)
    out["health"] = [
        {
            "id": 4000,
            "event_timestamp": "2023-11-02T00:18:01Z",
            "sensors": [{"name": f"sensor-{i}", "status": "OK", "serial": "x" * 40} for i in range(900)],
            "cpu": {"user_percent": 3.5},
        }
    ]
    for evs in out.values():
        assert max(len(json.dumps(e)) for e in evs) > 8096 or evs is out["entity_scoring"]
    assert max(len(json.dumps(e)) for evs in out.values() for e in evs) > 65536
    return out


async def _deliver(servers: list[ServerConfig], q: DurableQueue, tmp_path: Path, metrics: Metrics) -> None:
    conf = configuration(servers, retry_count=-1, batch_size=50, max_backoff_seconds=0.2)
    pool = WriterPool(servers, q, conf, tmp_path, connect_timeout=10, metrics=metrics)
    run = asyncio.create_task(pool.run())
    depths: list[int] = []

    async def done() -> bool:
        depths[:] = [await q.depth(s.name) for s in servers]
        return not any(depths)

    for _ in range(1200):
        if await done() or run.done():
            break
        await asyncio.sleep(0.05)
    await pool.stop(10)
    await run
    assert not any(depths), f"undelivered: {depths}"


def quarantine_export(workdir: Path, servers: list[ServerConfig]) -> list[dict[str, Any]]:
    """The rows of `siemconn quarantine export` (the command, as an operator runs it) for the queue in
    workdir/q."""
    config = config_skeleton(
        workdir, [s.model_dump(exclude_defaults=True) for s in servers], schedule="* * * * *"
    )
    config["configuration"]["data_dir"] = str(workdir / "q")
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    res = subprocess.run(
        [sys.executable, "-m", "siemconn", "quarantine", "export", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in res.stdout.splitlines()]


def _id_of(fmt: str, message: bytes) -> tuple[int, dict[str, Any] | None, dict[str, Any]]:
    """(event id, marker or None, what the message carries) of one received message, parsed strictly."""
    if fmt == "legacy":
        ev = json.loads(parse(message, "legacy").payload)
        return ev["id"], ev.get(MARKER), ev
    if fmt == "cef":
        ext = cefparse.parse_syslog(message).cef.labelled()
        marker = json.loads(ext[SIEM_MARKER_KEY]) if SIEM_MARKER_KEY in ext else None
        return int(ext["externalId"]), marker, ext
    attrs = leefparse.parse_syslog(message).leef.attributes
    marker = json.loads(attrs[SIEM_MARKER_KEY]) if SIEM_MARKER_KEY in attrs else None
    return int(attrs["externalId"]), marker, attrs


@pytest.mark.needs_rsyslog
@pytest.mark.parametrize("fmt", ["legacy", "cef", "leef"])
async def test_every_event_arrives_whole_at_rsyslog_defaults(
    rx: DefaultLimitsReceiver, tmp_path: Path, fmt: str
) -> None:
    events = tenant_events()
    inputs = ("tcp_lf", "tcp_oc", "relp")
    extra: dict[str, Any] = {"include_raw_event": True} if fmt != "legacy" else {}
    servers = [
        ServerConfig.model_validate(
            rx.input_entry(name, name, format=fmt, max_message_size=BUDGET, oversize="trim", **extra)
        )
        for name in inputs
    ]
    metrics = Metrics()
    q = await DurableQueue.open(tmp_path / "q", [*inputs, "ref"])
    try:
        for stream, evs in events.items():
            await q.commit_page(stream, evs, 1)
        stored = {int(e.event_id or 0): e for e in await drain(q, "ref")}
        await _deliver(servers, q, tmp_path, metrics)
    finally:
        await q.close()
    n = len(stored)
    assert n == sum(map(len, events.values()))
    exported = quarantine_export(tmp_path, servers)
    lines = rx.wait_for(3 * n)
    await asyncio.sleep(0.5)  # a fragment would arrive right after its message's head
    lines = rx.raw_lines()
    assert len(lines) == 3 * n, "fragment lines: a message was cut by the receiver"
    for name, srv in zip(inputs, servers, strict=True):
        msgs = [line.split(" ", 1)[1].encode() for line in lines if line.startswith(name + " ")]
        assert len(msgs) == n
        limit = message_limit(srv)
        assert limit is not None and max(map(len, msgs)) <= limit <= RSYSLOG_DEFAULT_MAX
        formatter = Formatter(srv)
        oversize_ids = {
            i
            for i, e in stored.items()
            if len(formatter.format_bytes(e.payload.encode(), e.stream, NOW)) > limit
        }
        assert len(oversize_ids) >= 10 or fmt != "legacy"
        seen: dict[int, dict[str, Any] | None] = {}
        for m in msgs:
            event_id, marker, carried = _id_of(fmt, m)
            seen[event_id] = marker
            original = json.loads(stored[event_id].payload)
            if marker is None:
                if fmt == "legacy":
                    assert carried == original
                else:
                    assert json.loads(carried["rawEvent"]) == original  # whole: the raw event is there
                continue
            assert marker["bytes"] > BUDGET
            if fmt == "legacy":
                assert carried == _expected_trimmed(original, marker)
            elif stored[event_id].stream != "health":
                assert marker["fields"][0] == "rawEvent" and "rawEvent" not in carried
        assert sorted(seen) == sorted(stored)  # N of N, each once
        trimmed = {i for i, mk in seen.items() if mk is not None}
        assert trimmed == oversize_ids and len(trimmed) >= 10
        assert metric_value(metrics.events_oversize.labels(name, "trimmed")) == len(trimmed)
        # the full events, in the quarantine with reason oversize: `quarantine export` gives the stored text
        kept = [row for row in exported if row["destination"] == name]
        assert sorted(row["id"] for row in kept) == sorted(trimmed)
        for row in kept:
            assert row["reason"] == OVERSIZE and row["stream"] == stored[row["id"]].stream
            assert row["raw"] == stored[row["id"]].payload
            assert row["detail"].startswith("trimmed: sent ")
    report = read_status(tmp_path / "q")
    by_dest: dict[tuple[str | None, str], int] = {}
    for c in report.quarantined:  # one count per stream: summed per destination
        by_dest[(c.destination, c.reason)] = by_dest.get((c.destination, c.reason), 0) + c.count
    oversize = {d.destination: d.oversize for d in report.destinations}
    for name in inputs:
        n_trimmed = int(metric_value(metrics.events_oversize.labels(name, "trimmed")))
        assert by_dest[(name, OVERSIZE)] == n_trimmed and oversize[name] == {"trimmed": n_trimmed}
    text = render_status(report)
    assert f"  over max_message_size (each kept whole in the quarantine): trimmed {n_trimmed}" in text


@pytest.mark.needs_rsyslog
async def test_drop_and_unfittable_keep_the_event_and_send_nothing(
    rx: DefaultLimitsReceiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = {"id": 1, "event_timestamp": "2023-11-02T00:18:01Z", "message": "ok"}
    big = {"id": 2, "event_timestamp": "2023-11-02T00:18:01Z", "event_data": {"x": "y" * 20000}}
    unfit = {"id": 3, "event_timestamp": "2023-11-02T00:18:01Z", "username": "u" * 9000}
    last = {"id": 4, "event_timestamp": "2023-11-02T00:18:01Z", "message": "last"}
    servers = [
        ServerConfig.model_validate(
            rx.input_entry("drop", "tcp_lf", max_message_size=BUDGET, oversize="drop")
        ),
        ServerConfig.model_validate(rx.input_entry("trim", "relp", max_message_size=BUDGET)),  # trim: default
    ]
    metrics = Metrics()
    q = await DurableQueue.open(tmp_path / "q", ["drop", "trim", "ref"])
    try:
        await q.commit_page("audit", [small, big, unfit, last], 1)
        stored = {int(e.event_id or 0): e for e in await drain(q, "ref")}
        await _deliver(servers, q, tmp_path, metrics)
    finally:
        await q.close()
    rx.wait_for(2 + 3)
    await asyncio.sleep(0.3)
    got: dict[str, list[int]] = {"tcp_lf": [], "relp": []}
    for line in rx.raw_lines():
        name, msg = line.split(" ", 1)
        got[name].append(json.loads(parse(msg.encode(), "legacy").payload)["id"])
    assert got == {"tcp_lf": [1, 4], "relp": [1, 2, 4]}
    assert metric_value(metrics.events_oversize.labels("drop", "dropped")) == 2
    assert metric_value(metrics.events_oversize.labels("trim", "trimmed")) == 1
    assert metric_value(metrics.events_oversize.labels("trim", "unfittable")) == 1
    kept = {(r.destination, int(r.event_id or 0)): export_row(r) for r in read_quarantine(tmp_path / "q")}
    assert set(kept) == {("drop", 2), ("drop", 3), ("trim", 2), ("trim", 3)}
    for (_, event_id), row in kept.items():
        assert row["raw"] == stored[event_id].payload and row["reason"] == OVERSIZE
    assert kept[("trim", 3)]["detail"].startswith("unfittable: not sent")
    assert kept[("trim", 2)]["detail"].startswith("trimmed: sent ")
    assert read_status(tmp_path / "q").destinations[0].oversize == {"dropped": 2}
    out = capsys.readouterr().out
    for name in ("syslog_event_dropped", "syslog_event_trimmed"):
        assert name in out
    dropped = log_records(out, "syslog_event_dropped")
    assert {(d["event_id"], d["action"], d["stream"]) for d in dropped} == {
        ("2", "dropped", "audit"),
        ("3", "dropped", "audit"),
        ("3", "unfittable", "audit"),
    }
    assert all(int(d["bytes"]) > BUDGET and d["max_message_size"] == str(BUDGET) for d in dropped)


async def test_udp_truncation_warning_names_the_event_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    try:
        s = server(name="u", server_protocol="UDP", server_port=sink.getsockname()[1], max_message_size=1000)
        q = MemQueue(["u"])
        q.put("audit", [{"id": 6}, {"id": 7, "blob": "x" * 2000}, {"id": 8}])
        pool = WriterPool([s], q, configuration([s]), tmp_path)
        run = asyncio.create_task(pool.run())
        await wait_until_async(cursor_at(q, "u", 3), 10)
        await pool.stop(5)
        await run
        got = [sink.recv(70000) for _ in range(3)]
    finally:
        sink.close()
    assert len(got[1]) == 1000
    assert [r.event_id for _, _, r in q.quarantined] == ["7"]  # kept whole
    out = capsys.readouterr().out
    summary = log_records(out, "syslog_udp_events_truncated")
    assert summary and summary[0]["event_ids"] == "[7]"
    each = log_records(out, "syslog_event_truncated")
    assert each and each[0]["event_id"] == "7" and int(each[0]["bytes"]) > 1000
    assert each[0]["sent_bytes"] == "1000" and each[0]["stream"] == "audit"


def test_octet_counted_trimmed_message_fits_with_its_count() -> None:
    """Octet-counted frames of trimmed messages are counted from the trimmed message."""
    s = server(max_message_size=BUDGET, framing="octet-counting")
    ev = _big_detection(300)
    payload = json.dumps(ev).encode()
    formatter = Formatter(s)
    msg = formatter.format_bytes(payload, "detections", NOW)
    fitted = Oversizer(s, formatter).fit(msg, payload, "detections", NOW)
    assert fitted.message is not None
    framed = b"%d %s" % (len(fitted.message), fitted.message)
    assert len(framed) == fitted.sent <= BUDGET
    assert unframe(framed, "octet-counting") == [fitted.message]


@pytest.mark.needs_rsyslog
async def test_without_a_budget_rsyslog_defaults_cut_large_events_into_fragments(
    rx: DefaultLimitsReceiver, tmp_path: Path
) -> None:
    """The problem the budget solves, on the same receiver: with the defaults (no budget), an event over
    8,096 bytes arrives cut, plus its tail as a bogus message (LF framing), or cut and acknowledged (RELP)."""
    events = [{"id": 1, "message": "small"}, {"id": 2, "blob": "x" * 20000}, {"id": 3, "message": "last"}]
    servers = [ServerConfig.model_validate(rx.input_entry(n, n)) for n in ("tcp_lf", "relp")]
    q = await DurableQueue.open(tmp_path / "q", ["tcp_lf", "relp"])
    try:
        await q.commit_page("audit", events, 1)
        await _deliver(servers, q, tmp_path, Metrics())
    finally:
        await q.close()
    rx.wait_for(6)
    await asyncio.sleep(0.5)
    lines = rx.raw_lines()
    tcp = [x.split(" ", 1)[1] for x in lines if x.startswith("tcp_lf ")]
    relp = [x.split(" ", 1)[1] for x in lines if x.startswith("relp ")]
    assert len(tcp) > 3  # three events, more messages: the tails of the cut one
    assert max(map(len, tcp)) == RSYSLOG_DEFAULT_MAX
    assert len(relp) == 3 and len(relp[1]) == RSYSLOG_DEFAULT_MAX  # cut, and acknowledged
    with pytest.raises(ValueError):
        json.loads(parse(relp[1].encode(), "legacy").payload)


BUDGETED: list[dict[str, Any]] = [
    {"server_protocol": "TCP", "oversize": "trim"},
    {"server_protocol": "TCP", "framing": "octet-counting", "oversize": "trim"},
    {"server_protocol": "TCP", "oversize": "drop"},
    {"server_protocol": "TLS", "oversize": "truncate"},
    {"server_protocol": "RELP", "oversize": "trim"},
    {"server_protocol": "UDP", "oversize": "trim"},
    {"server_protocol": "UDP"},  # truncate, as before
    {"server_protocol": "TCP", "format": "cef", "include_raw_event": True, "oversize": "trim"},
    {"server_protocol": "TCP", "format": "leef", "leef_delimiter": "^", "oversize": "trim"},
    {"server_protocol": "TCP", "format": "rfc5424", "timestamp": "event", "oversize": "trim"},
]


@pytest.mark.parametrize("kw", BUDGETED, ids=lambda k: "-".join(map(str, k.values())))
async def test_a_budgeted_batch_is_the_event_by_event_result(tmp_path: Path, kw: dict[str, Any]) -> None:
    """`prepare` (segments, one length check per slice) gives the bytes of formatting, fitting and framing
    event by event; every frame is within the budget; the counts add up."""
    srv = server(max_message_size=2000, **kw)
    f = EventFactory(seed=9, big_every=10)  # ids 7, 17, 27 of each stream are big
    q = await DurableQueue.open(tmp_path / "q", ["s"])
    try:
        await q.commit_page("detections", [f.make("detections", i, 1.7e9).doc for i in range(1, 30)], 1)
        await q.commit_page("audit", [f.make("audits", i, 1.7e9).doc for i in range(1, 30)], 1)
        batch = await q.read_batch("s", 100)
        assert batch is not None
        pool = WriterPool([srv], q, configuration([srv]), tmp_path, wall_clock=lambda: NOW)
        prepared = pool.writer("s").prepare(batch)
    finally:
        await q.close()
    formatter = Formatter(srv)
    sizer = Oversizer(srv, formatter)
    limit = message_limit(srv)
    assert limit is not None
    expected: list[bytes] = []
    over = 0
    for ev in batch.events:
        payload = ev.payload.encode()
        msg: bytes | None = formatter.format_bytes(payload, ev.stream, NOW)
        assert msg is not None
        if len(msg) > limit:
            over += 1
            msg = sizer.fit(msg, payload, ev.stream, NOW).message
        if msg is None:
            continue
        if srv.server_protocol == "UDP":
            expected.append(msg)
        elif srv.framing == "octet-counting":
            expected.append(b"%d %s" % (len(msg), msg))
        else:
            expected.append(msg + b"\n")
    assert over >= 3
    assert b"".join(prepared.frames) == b"".join(expected)
    assert all(len(x) <= 2000 for x in expected)
    assert prepared.oversize is not None and len(prepared.oversize.events) == over
    assert sum(map(len, prepared.oversize.kept.values())) == over  # each kept whole
    assert prepared.sent == len(expected) == prepared.events - len(prepared.oversize.dropped_ids or [])
