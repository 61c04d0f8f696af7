"""The bytes fast path of delivery: queue segments -> constant header -> one chunk per segment.

Every test compares against the per-event oracle below (`Formatter.format` on `str` payloads, one frame
per event, `fit_datagram` per datagram), which is how the writer formatted batches before segments.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from support.metricvalue import metric_value
from support.syslogparse import parse, unframe

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError
from siemconn.events.batch import Batch, QueuedEvent, Segment
from siemconn.events.encoder import encode_event
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue
from siemconn.syslog.format import Formatter, fit_datagram, frame, parse_event_timestamp
from siemconn.syslog.memqueue import MemQueue
from siemconn.syslog.pool import ServerWriter, WriterPool
from siemconn.syslog.wire import Oversize

NOW = datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC)
LATER = datetime(2024, 3, 5, 7, 8, 10, tzinfo=UTC)
STREAMS = ["detections", "audit", "entity_scoring", "entity_scoring.host", "weird stream é"]

# (format, timestamp, structured_data, hostname): every header shape the Formatter builds
SHAPES: list[dict[str, Any]] = [
    {"format": "legacy"},
    {"format": "legacy", "hostname": "edge-1", "facility": "local0", "severity": "warning"},
    {"format": "rfc3164"},
    {"format": "rfc3164", "hostname": "h", "app_name": "vec-tra_1"},
    {"format": "rfc5424"},
    {"format": "rfc5424", "hostname": "host-a", "structured_data": '[x@32473 t="é ü"]'},
    {"format": "rfc5424", "timestamp": "event"},
    {"format": "rfc5424", "timestamp": "event", "structured_data": "[a@1]"},
]


def server(protocol: str = "TCP", **kw: Any) -> ServerConfig:
    base = {"name": "s", "server_protocol": protocol, "server_host": "127.0.0.1", "server_port": 514}
    return ServerConfig.model_validate(base | kw)


def sample_events(first: int, n: int) -> list[dict[str, Any]]:
    """Events with non-ASCII text (stored \\u-escaped), with and without event_timestamp, one big one."""
    out: list[dict[str, Any]] = []
    for i in range(first, first + n):
        ev: dict[str, Any] = {"id": i, "msg": f"évènement {i} 中文 😀", "score": i / 3}
        if i % 3 == 0:
            ev["event_timestamp"] = "2023-11-01T10:20:30.5+02:00"
        elif i % 3 == 1:
            ev["event_timestamp"] = "not a time"
        if i % 4 == 2:
            ev["blob"] = "x" * 1500  # over max_message_size=1000 below
        out.append(ev)
    return out


PAYLOADS = [encode_event(e) for e in sample_events(0, 12)] + ["{}", '{"event_timestamp": 5}', "[1, 2]"]


# --- Formatter -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())))
def test_constant_header_and_format_bytes_match_format(shape: dict[str, Any]) -> None:
    f = Formatter(server(**shape), hostname="test-host")
    ref = Formatter(server(**shape), hostname="test-host")
    for now in (NOW, LATER, NOW):  # the per-`now` caches are invalidated when `now` changes
        for stream in STREAMS:
            header = f.constant_header(stream, now)
            if shape.get("timestamp") == "event":
                assert header is None
            else:
                assert header is not None and header.startswith(b"<")
            for payload in PAYLOADS:
                want = ref.format(payload, stream, now)
                if header is not None:
                    assert header + payload.encode() == want
                assert f.format_bytes(payload.encode(), stream, now) == want


def test_constant_header_depends_on_stream_only_for_rfc5424() -> None:
    legacy = Formatter(server())
    assert legacy.constant_header("audit", NOW) == legacy.constant_header("detections", NOW)
    rfc = Formatter(server(format="rfc5424", hostname="h"))
    assert rfc.constant_header("audit", NOW) == b"<14>1 2024-03-05T07:08:09.123456Z h siemconn - audit - "
    assert rfc.constant_header("detections", LATER) == (
        b"<14>1 2024-03-05T07:08:10Z h siemconn - detections - "
    )


def test_parse_event_timestamp_accepts_bytes() -> None:
    for payload in PAYLOADS:
        assert parse_event_timestamp(payload.encode()) == parse_event_timestamp(payload)
    assert parse_event_timestamp(b'{"event_timestamp": "2023-11-01T10:20:30Z"}') == "2023-11-01T10:20:30Z"
    assert parse_event_timestamp(b"\xff\xfe not utf-8") is None


# --- Batch ---------------------------------------------------------------------------------------


async def two_page_batch(tmp_path: Path) -> tuple[DurableQueue, Batch]:
    """A batch starting in the middle of an audit page and ending in the middle of a host-scoring page."""
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    await q.commit_page("audit", sample_events(1, 10), 11)
    await q.commit_page("entity_scoring.host", sample_events(101, 10), 111)
    first = await q.read_batch("a", 4)
    assert first is not None
    await q.ack(first)
    batch = await q.read_batch("a", 12)
    assert batch is not None
    return q, batch


async def test_batch_segments_and_events(tmp_path: Path) -> None:
    q, batch = await two_page_batch(tmp_path)
    try:
        assert (batch.start_seq, batch.end_seq, len(batch)) == (4, 16, 12)
        assert [(s.stream, s.ids) for s in batch.segments] == [
            ("audit", list(range(5, 11))),
            ("entity_scoring", list(range(101, 107))),
        ]
        want = [("audit", e) for e in sample_events(5, 6)] + [
            ("entity_scoring", e) for e in sample_events(101, 6)
        ]
        assert [p for s in batch.segments for p in s.payloads] == [encode_event(e).encode() for _, e in want]
        events = batch.events
        assert events == [QueuedEvent(stream, e["id"], json.dumps(e)) for stream, e in want]
        assert all(type(e.payload) is str for e in events)
        assert batch.events is events  # built once
        again = await q.read_batch_from("a", 4, 12)
        assert again == batch and "_events" not in repr(batch)
    finally:
        await q.close()


def test_batch_events_from_hand_made_segments() -> None:
    segs = [
        Segment("audit", [1, None], [b'{"id": 1}', b'{"x": "\\u00e9"}']),
        Segment("detections", [7], [b"{}"]),
    ]
    batch = Batch("a", segs, 10, 13)
    assert len(batch) == 3
    assert batch.events == [
        QueuedEvent("audit", 1, '{"id": 1}'),
        QueuedEvent("audit", None, '{"x": "\\u00e9"}'),
        QueuedEvent("detections", 7, "{}"),
    ]


# --- the writer's _prepare: fast path vs per-event path ------------------------------------------


def writer(srv: ServerConfig, tmp_path: Path) -> ServerWriter:
    pool = WriterPool([srv], MemQueue([srv.name]), configuration([srv]), tmp_path, wall_clock=lambda: NOW)
    return pool.writer(srv.name)


def per_event(srv: ServerConfig, events: list[QueuedEvent]) -> tuple[list[bytes], int, Oversize | None]:
    """The oracle: (frames, events sent, oversize) formatting and framing one event at a time."""
    fmt = Formatter(srv).format
    oversize: Oversize | None = None
    frames: list[bytes] = []
    for ev in events:
        msg = fmt(ev.payload, ev.stream, NOW)
        if srv.server_protocol != "UDP":
            frames.append(frame(msg, srv.framing))
            continue
        fitted = fit_datagram(msg, srv)
        if fitted is not msg:
            oversize = oversize or Oversize()
            if fitted is None:
                oversize.dropped_ids = [*(oversize.dropped_ids or []), ev.event_id]
                continue
            oversize.truncated += 1
        frames.append(fitted)
    return frames, len(frames), oversize


TRANSPORTS: list[dict[str, Any]] = [
    {"protocol": "TCP", "framing": "lf"},
    {"protocol": "TCP", "framing": "octet-counting"},
    {"protocol": "TLS", "framing": "lf"},
    {"protocol": "TLS", "framing": "octet-counting"},
    {"protocol": "UDP", "udp_oversize": "truncate", "max_message_size": 1000},
    {"protocol": "UDP", "udp_oversize": "drop", "max_message_size": 1000},
    {"protocol": "UDP"},  # nothing oversize
]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: "-".join(map(str, t.values())))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())))
async def test_prepare_fast_path_is_byte_identical(
    tmp_path: Path, transport: dict[str, Any], shape: dict[str, Any]
) -> None:
    q, batch = await two_page_batch(tmp_path)
    try:
        t = dict(transport)
        srv = server(t.pop("protocol"), **t, **shape)
        fast = writer(srv, tmp_path).prepare(batch)
        slow_frames, slow_sent, slow_oversize = per_event(srv, batch.events)
    finally:
        await q.close()
    assert fast.batch is batch
    assert b"".join(fast.frames) == b"".join(slow_frames)
    assert fast.events == 12
    assert fast.sent == slow_sent == len(slow_frames)
    assert fast.oversize == slow_oversize
    if srv.server_protocol == "UDP" or srv.framing == "octet-counting":
        assert fast.frames == slow_frames  # one datagram / one counted frame per event
    else:
        assert len(fast.frames) == len(batch.segments) == 2  # one chunk per page slice
    if transport.get("udp_oversize") == "drop":
        assert fast.oversize is not None and fast.oversize.dropped_ids == [6, 10, 102, 106]
        assert fast.sent == 8
    elif transport.get("udp_oversize") == "truncate":
        assert fast.oversize is not None and fast.oversize.truncated == 4
        assert max(map(len, fast.frames)) == 1000
    else:
        assert fast.oversize is None
    # what a receiver reads back: the events, in order, each with its own stream
    if srv.server_protocol == "UDP":
        messages = fast.frames
    else:
        messages = unframe(b"".join(fast.frames), srv.framing)
    assert len(messages) == fast.sent
    if transport.get("udp_oversize") != "truncate":
        msgs = [parse(m, srv.format) for m in messages]
        ids = [json.loads(m.payload)["id"] for m in msgs]
        assert ids == [
            e.event_id
            for e in batch.events
            if fast.oversize is None or e.event_id not in (fast.oversize.dropped_ids or [])
        ]


# --- counts, through the pool with a real queue --------------------------------------------------


class _Transport:
    """Collects chunks; fails the first `fail` writes."""

    def __init__(self, chunks: list[bytes], fail: int) -> None:
        self.chunks, self.fail, self.closed = chunks, fail, False

    async def write(self, frames: list[bytes]) -> None:
        if self.fail:
            self.fail -= 1
            raise DeliveryError("simulated: the server closed the connection")
        self.chunks.extend(frames)

    async def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def _no_sleep(delay: float) -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    "transport",
    [{"protocol": "TCP"}, {"protocol": "UDP", "udp_oversize": "drop", "max_message_size": 1000}],
    ids=["tcp-lf", "udp-drop"],
)
async def test_delivered_and_failed_counts_are_events_not_chunks(
    tmp_path: Path, transport: dict[str, Any]
) -> None:
    t = dict(transport)
    srv = server(t.pop("protocol"), **t)
    q = await DurableQueue.open(tmp_path / "q", ["s"])
    chunks: list[bytes] = []
    opened: list[_Transport] = []

    async def opener(*a: Any, **k: Any) -> _Transport:
        opened.append(_Transport(chunks, fail=1 if not opened else 0))  # the first write fails
        return opened[-1]

    metrics = Metrics()
    conf = configuration([srv], batch_size=7, retry_count=-1)
    pool = WriterPool([srv], q, conf, tmp_path, metrics=metrics, opener=opener, sleep=_no_sleep)
    try:
        evs = sample_events(1, 30)
        for p in range(3):  # pages of 10 events, batches of 7: batches span pages
            await q.commit_page("audit" if p % 2 else "detections", evs[p * 10 : p * 10 + 10], p + 1)
        run = asyncio.create_task(pool.run())
        for _ in range(500):
            if await q.depth("s") == 0:
                break
            await asyncio.sleep(0.01)
        await pool.stop(5)
        await run
        assert await q.depth("s") == 0
    finally:
        await q.close()
    dropped = [e["id"] for e in evs if len(encode_event(e)) > 900] if srv.server_protocol == "UDP" else []
    sent = 30 - len(dropped)
    assert metric_value(metrics.events_failed.labels("s")) == 7  # the whole first batch
    # UDP events are counted as sent (no acknowledgement), the others as delivered
    accepted = metrics.events_sent if srv.server_protocol == "UDP" else metrics.events_delivered
    assert metric_value(accepted.labels("s")) == sent
    assert metric_value(metrics.events_truncated.labels("s")) == len(dropped)
    if srv.server_protocol == "UDP":
        assert len(chunks) == sent
        got = [json.loads(parse(c, "legacy").payload)["id"] for c in chunks]
    else:
        assert len(chunks) < sent  # one chunk per page slice, not per event
        got = [json.loads(parse(m, "legacy").payload)["id"] for m in unframe(b"".join(chunks), "lf")]
    assert got == [e["id"] for e in evs if e["id"] not in dropped]
