"""Backlog drain batching: larger batches while the backlog is large, with the same guarantees.

Real durable queue (SQLite in tmp_path) and real TCP sockets on 127.0.0.1: nothing lost, order kept, every
batch acked only after its write returned, never two batches unacknowledged, the batch size bounded by
`drain_batch_size` and `drain_batch_bytes`, and after a receiver that drops the connection every event
arrives with at most one batch resent per drop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from support.syslogparse import parse

from siemconn.config import ServerConfig
from siemconn.events.batch import Batch
from siemconn.events.rejected import Rejected
from siemconn.queue import DurableQueue
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.transport import Transport, open_transport

PAGE = 1000


def srv(port: int) -> ServerConfig:
    return ServerConfig.model_validate(
        {"name": "a", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": port}
    )


def page(first: int, n: int = PAGE) -> list[dict[str, Any]]:
    return [{"id": i, "msg": f"event {i}", "pad": "x" * 200} for i in range(first, first + n)]


class LineSink:
    """TCP receiver collecting complete lines; `drop_after` bytes: close each connection after that many."""

    def __init__(self, drop_after: int | None = None) -> None:
        self.lines: list[bytes] = []
        self.connections = 0
        self.drop_after = drop_after
        self.server: asyncio.Server | None = None

    async def start(self) -> LineSink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.drop_after if self.connections <= 3 else None  # the first three connections drop
        got = 0
        buf = b""
        while True:
            chunk = await reader.read(65536 if limit is None else max(1, min(65536, limit - got)))
            if not chunk:
                break
            got += len(chunk)
            buf += chunk
            *complete, buf = buf.split(b"\n")
            self.lines.extend(complete)
            if limit is not None and got >= limit:
                writer.transport.abort()  # a crash: RST, unread data discarded
                return
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def ids(self) -> list[int]:
        return [json.loads(parse(line, "legacy").payload)["id"] for line in self.lines]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class Recorder:
    """Wraps the queue and the real transport: the order of reads, write starts and ends, and acks."""

    def __init__(self, queue: DurableQueue) -> None:
        self.queue = queue
        self.log: list[tuple[str, int, int]] = []  # (what, start_seq, end_seq)
        self.batches: list[int] = []
        self._writing: list[int] = []

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        b = await self.queue.read_batch(destination, max_events)
        if b is not None:
            self.batches.append(len(b))
        return b

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        b = await self.queue.read_batch_from(destination, start_seq, max_events)
        if b is not None:
            self.batches.append(len(b))
        return b

    async def ack(self, batch: Batch) -> None:
        self.log.append(("ack", batch.start_seq, batch.end_seq))
        await self.queue.ack(batch)

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        await self.queue.wait_for_data(destination, timeout)

    async def depth(self, destination: str) -> int:
        return await self.queue.depth(destination)

    async def quarantine(self, destination: str, stream: str, rejects: Sequence[Rejected]) -> None:
        await self.queue.quarantine(destination, stream, rejects)

    async def oldest_age(self, destination: str) -> float | None:
        return await self.queue.oldest_age(destination)

    async def opener(self, *a: Any, **k: Any) -> Transport:
        t = await open_transport(*a, **k)
        rec = self

        class Recorded:
            async def write(self, frames: list[bytes]) -> None:
                n = sum(f.count(b"\n") for f in frames)
                rec.log.append(("write", n, 0))
                await t.write(frames)
                rec.log.append(("written", n, 0))

            async def close(self) -> None:
                await t.close()

            def is_closing(self) -> bool:
                return t.is_closing()

        return Recorded()


async def _fill(q: DurableQueue, events: int) -> None:
    for first in range(0, events, PAGE):
        await q.commit_page("audit", page(first, min(PAGE, events - first)), first + PAGE)


async def _drain(
    tmp_path: Path, sink: LineSink, events: int, **conf: Any
) -> tuple[Recorder, WriterPool, DurableQueue]:
    q = await DurableQueue.open(tmp_path / "data", ["a"])
    await _fill(q, events)
    rec = Recorder(q)
    s = srv(sink.port)
    c = configuration([s], retry_count=-1, max_backoff_seconds=0.05, **conf)
    pool = WriterPool([s], rec, c, tmp_path, opener=rec.opener, connect_timeout=5, settle_seconds=0.005)
    run = asyncio.create_task(pool.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while await q.depth("a"):
        assert loop.time() < deadline, "backlog not drained"
        assert not run.done(), run
        await asyncio.sleep(0.02)
    await pool.stop(5)
    await run
    return rec, pool, q


async def test_drain_batches_grow_with_the_same_guarantees(tmp_path: Path) -> None:
    sink = await LineSink().start()
    try:
        rec, _, q = await _drain(tmp_path, sink, 30_000, batch_size=100, drain_batch_size=3000)
        await q.close()
    finally:
        sink.close()
    assert sink.ids() == list(range(30_000))  # nothing lost, nothing twice, in order
    assert max(rec.batches) == 3000 and min(rec.batches[:1]) == 100  # the first batch measures the bytes
    assert all(n <= 3000 for n in rec.batches)
    # the tail (one drain batch or less behind) goes in batch_size batches again
    assert rec.batches[-1] <= 100
    # each ack follows the end of its write; a write starts only after the previous batch was acked
    kinds = [k for k, _, _ in rec.log]
    assert kinds == ["write", "written", "ack"] * (len(kinds) // 3)
    acks = [(s, e) for k, s, e in rec.log if k == "ack"]
    assert all(a[1] == b[0] for a, b in zip(acks, acks[1:], strict=False))  # acked in order, contiguous
    written = [n for k, n, _ in rec.log if k == "written"]
    assert written == [e - s for s, e in acks]


async def test_drain_batch_bytes_caps_a_batch(tmp_path: Path) -> None:
    sink = await LineSink().start()
    try:
        rec, _, q = await _drain(
            tmp_path, sink, 20_000, batch_size=100, drain_batch_size=10_000, drain_batch_bytes=262_144
        )
        await q.close()
    finally:
        sink.close()
    assert sink.ids() == list(range(20_000))
    longest = max(len(x) for x in sink.lines) + 1
    shortest = min(len(x) for x in sink.lines) + 1
    # the cap is applied with the previous batch's bytes per event (events here differ by a few digits)
    assert 262_144 // longest <= max(rec.batches) <= 262_144 // shortest


async def test_default_is_off_batches_stay_batch_size(tmp_path: Path) -> None:
    sink = await LineSink().start()
    try:
        rec, pool, q = await _drain(tmp_path, sink, 3_000, batch_size=250)
        await q.close()
    finally:
        sink.close()
    assert pool.drain_batch_size == 250
    assert sink.ids() == list(range(3_000))
    assert set(rec.batches) == {250}


@pytest.mark.parametrize("drop_after", [150_000, 700_000])
async def test_receiver_crash_mid_drain_loses_nothing_and_resends_at_most_a_batch(
    tmp_path: Path, drop_after: int
) -> None:
    """The receiver aborts its first three connections after `drop_after` bytes (mid-batch): every event
    still arrives, in order after each reconnect, and each drop resends at most one drain batch."""
    sink = await LineSink(drop_after=drop_after).start()
    drain = 2000
    try:
        rec, _, q = await _drain(tmp_path, sink, 20_000, batch_size=100, drain_batch_size=drain)
        await q.close()
    finally:
        sink.close()
    ids = sink.ids()
    assert set(ids) == set(range(20_000))
    assert sink.connections >= 4
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= 3 * drain  # one unacknowledged batch per crash at most
    # after each reconnect the stream restarts at the oldest unacked event and goes on in order
    runs = [0]
    for prev, cur in zip(ids, ids[1:], strict=False):
        if cur != prev + 1:
            assert cur <= prev  # a resend starts earlier, never skips ahead
            runs.append(cur)
    assert max(rec.batches) <= drain
