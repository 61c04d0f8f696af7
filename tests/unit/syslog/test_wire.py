"""siemconn.syslog.wire: the writer's format guard, an event a formatter raises on quarantined
(`format_error`) and the rest of the batch sent, on both the bytes and the events path."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from unit.syslog.test_pool import Sink, fast_sleep, srv

from siemconn.commands.render import render_status
from siemconn.queue import DurableQueue, read_quarantine, read_status
from siemconn.syslog.format import Formatter
from siemconn.syslog.memqueue import MemQueue
from siemconn.syslog.pool import WriterPool


class _Poisoned(Formatter):
    """A formatter that raises on any payload containing "poison" (any future format could)."""

    __slots__ = ()

    def format_bytes(self, payload: bytes, stream: str, now: datetime) -> bytes:
        if b"poison" in payload:
            raise ValueError("cannot format this one")
        return super().format_bytes(payload, stream, now)

    def format(self, payload: str, stream: str, now: datetime) -> bytes:
        if "poison" in payload:
            raise ValueError("cannot format this one")
        return super().format(payload, stream, now)

    def constant_header(self, stream: str, now: datetime) -> bytes | None:
        return None  # per-event formatting, like rfc5424 with event timestamps


async def _run_pool(q: Any, sink: Sink, tmp_path: Path, done: Any) -> None:
    s = srv("a", sink.port)
    pool = WriterPool([s], q, configuration([s], retry_count=-1, batch_size=10), tmp_path, sleep=fast_sleep)
    pool.writer("a").formatter = _Poisoned(s)
    run = asyncio.create_task(pool.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await done():
        assert loop.time() < deadline and not run.done(), "writer did not deliver"
        await asyncio.sleep(0.02)
    await pool.stop(5)
    await asyncio.wait_for(run, 5)


@pytest.mark.parametrize("framing", ["lf", "octet-counting"])
async def test_a_payload_the_formatter_raises_on_is_quarantined_and_the_rest_sent(
    tmp_path: Path, framing: str
) -> None:
    sink = await Sink().start()
    data = tmp_path / "q"
    q = await DurableQueue.open(data, ["a"])
    try:
        evs = [{"id": i, "msg": "poison" if i in (3, 14) else "ok"} for i in range(25)]
        await q.commit_page("detections", evs, 25)

        async def done() -> bool:
            return await q.depth("a") == 0

        await _run_pool(q, sink, tmp_path, done)
    finally:
        await q.close()
        sink.close()
    got = [
        json.loads(line[line.index(b"{") :])["id"] for line in bytes(sink.data).split(b"\n") if b"{" in line
    ]
    assert got == [i for i in range(25) if i not in (3, 14)]
    rows = list(read_quarantine(data))
    assert [(r.destination, r.key, r.event_id, r.reason) for r in rows] == [
        ("a", "detections", "3", "format_error"),
        ("a", "detections", "14", "format_error"),
    ]
    assert json.loads(rows[0].raw) == evs[3] and "ValueError" in rows[0].detail
    text = render_status(read_status(data))
    assert "detections -> a" in text and "format_error" in text


async def test_the_events_path_has_the_same_guard(tmp_path: Path) -> None:
    sink = await Sink().start()
    q = MemQueue(["a"])
    q.put("audit", [{"id": 1}, {"id": 2, "m": "poison"}, {"id": 3}])

    async def done() -> bool:
        return q.cursors["a"] == 3

    try:
        await _run_pool(q, sink, tmp_path, done)
    finally:
        sink.close()
    assert [(d, s, r.event_id, r.reason) for d, s, r in q.quarantined] == [
        ("a", "audit", "2", "format_error")
    ]
    assert bytes(sink.data).count(b"\n") == 2
