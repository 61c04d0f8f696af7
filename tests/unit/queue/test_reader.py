"""The queue's fast paths keep the exact bytes and order: the encoder, the decoded-page cache, read-ahead."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siemconn.config import Configuration, ServerConfig
from siemconn.errors import DeliveryError, QueueError
from siemconn.events.batch import Batch
from siemconn.events.encoder import encode_event
from siemconn.queue import DurableQueue
from siemconn.rux.page import has_long_digit_run, loads_page
from siemconn.syslog.pool import WriterPool

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8))
def test_encoder_is_byte_identical_to_json_dumps(event: dict[str, Any]) -> None:
    assert encode_event(event) == json.dumps(event)


def test_encoder_special_values() -> None:
    event = {"a": math.nan, "b": -math.inf, "c": "é\x7f\u2028😀", "d": [1.5, True, None], "e": {}}
    assert encode_event(event) == json.dumps(event)


def _events(first: int, n: int) -> list[dict[str, Any]]:
    return [{"id": i, "msg": f"event {i} ü"} for i in range(first, first + n)]


async def _read_all(q: DurableQueue, dest: str, size: int) -> list[int | None]:
    got: list[int | None] = []
    while (b := await q.read_batch(dest, size)) is not None:
        got.extend(e.event_id for e in b.events)
        assert [json.loads(e.payload)["id"] for e in b.events] == [e.event_id for e in b.events]
        await q.ack(b)
    return got


@pytest.mark.parametrize("size", [1, 7, 10, 25, 1000])
async def test_batches_across_pages_in_order(tmp_path: Path, size: int) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a", "b"])
    try:
        for p in range(5):
            await q.commit_page("audit", _events(p * 10 + 1, 10), p * 10 + 11)
        assert await _read_all(q, "a", size) == list(range(1, 51))
        # a page committed after a destination read everything is read too (the cache is not stale)
        await q.commit_page("audit", _events(51, 10), 61)
        assert await _read_all(q, "a", size) == list(range(51, 61))
        assert await _read_all(q, "b", 3) == list(range(1, 61))
    finally:
        await q.close()


async def test_pages_stored_as_text_or_blob_read_the_same(tmp_path: Path) -> None:
    """New pages are stored as TEXT (no encode copy); pages written as BLOBs by earlier versions still read."""
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        await q.commit_page("audit", _events(1, 10), 11)
        await q.commit_page("audit", _events(11, 10), 21)
        conn = sqlite3.connect(q.db_path, timeout=10, isolation_level=None)  # a second connection (WAL)
        assert [r[0] for r in conn.execute("SELECT typeof(data) FROM page_log ORDER BY first_seq")] == [
            "text",
            "text",
        ]
        conn.execute("UPDATE page_log SET data = CAST(data AS BLOB) WHERE first_seq = 0")
        assert [r[0] for r in conn.execute("SELECT typeof(data) FROM page_log ORDER BY first_seq")] == [
            "blob",
            "text",
        ]
        conn.close()
        batch = await q.read_batch("a", 20)
        assert batch is not None
        assert [json.loads(e.payload) for e in batch.events] == _events(1, 20)
        assert all(isinstance(p, bytes) for seg in batch.segments for p in seg.payloads)
    finally:
        await q.close()


async def test_read_ahead_does_not_move_the_cursor(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        await q.commit_page("audit", _events(1, 10), 11)
        first = await q.read_batch("a", 4)
        assert first is not None
        ahead = await q.read_batch_from("a", first.end_seq, 4)
        assert ahead is not None and [e.event_id for e in ahead.events] == [5, 6, 7, 8]
        assert await q.depth("a") == 10  # reading ahead moves nothing
        with pytest.raises(QueueError, match="skip"):
            await q.ack(ahead)  # the batch before it is not acked yet
        # the writer failed before acking `first`: it starts again from the cursor
        again = await q.read_batch("a", 4)
        assert again is not None and [e.event_id for e in again.events] == [1, 2, 3, 4]
        await q.ack(again)
        ahead = await q.read_batch_from("a", again.end_seq, 100)
        assert ahead is not None and [e.event_id for e in ahead.events] == [5, 6, 7, 8, 9, 10]
        await q.ack(ahead)
        assert await q.depth("a") == 0
        assert await q.read_batch_from("a", ahead.end_seq, 4) is None
        with pytest.raises(QueueError, match="before the cursor"):
            await q.read_batch_from("a", 0, 4)
    finally:
        await q.close()


async def test_reopen_reads_from_the_durable_cursor(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    await q.commit_page("audit", _events(1, 10), 11)
    b = await q.read_batch("a", 3)
    assert b is not None
    await q.ack(b)
    await q.read_batch_from("a", b.end_seq, 3)  # read ahead, never acked
    await q.close()
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        assert await _read_all(q, "a", 4) == list(range(4, 11))
    finally:
        await q.close()


class _RecordingTransport:
    """Records, for every write, the queue cursor at that moment and the event ids; can fail writes."""

    def __init__(self, q: DurableQueue, fail_on: set[int], log: list[tuple[int, list[int]]]) -> None:
        self.q, self.fail_on, self.log, self.closed = q, fail_on, log, False

    async def write(self, frames: list[bytes]) -> None:
        lines = [line for f in frames for line in f.splitlines()]  # TCP LF: a chunk may hold many lines
        ids = [json.loads(line[line.index(b"{") :])["id"] for line in lines]
        self.log.append((await self.q.depth("a"), ids))
        await asyncio.sleep(0.01)  # the settle wait, during which the writer reads ahead
        if len(self.log) in self.fail_on:
            raise DeliveryError("simulated: the server reset the connection")

    async def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_writer_read_ahead_keeps_one_unacked_batch(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    log: list[tuple[int, list[int]]] = []

    async def opener(*a: Any, **k: Any) -> _RecordingTransport:
        return _RecordingTransport(q, {2, 5}, log)

    async def no_sleep(delay: float) -> None:
        await asyncio.sleep(0)

    read_from, ahead = q.read_batch_from, []

    async def counting_read_from(destination: str, start_seq: int, max_events: int) -> Batch | None:
        ahead.append(start_seq)
        return await read_from(destination, start_seq, max_events)

    q.read_batch_from = counting_read_from  # type: ignore[method-assign]  # spy on this instance's read-ahead

    server = ServerConfig(name="a", server_host="127.0.0.1", server_port=9, server_protocol="TCP")
    conf = Configuration.model_validate(
        {
            "server": [server.model_dump()],
            "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
            "batch_size": 10,
            "retry_count": -1,
        }
    )
    pool = WriterPool([server], q, conf, tmp_path, sleep=no_sleep, opener=opener, connect_timeout=5)
    try:
        for p in range(4):
            await q.commit_page("audit", _events(p * 10 + 1, 10), p * 10 + 11)
        run = asyncio.create_task(pool.run())
        for _ in range(500):
            if await q.depth("a") == 0:
                break
            await asyncio.sleep(0.01)
        await pool.stop(5)
        await run
        assert await q.depth("a") == 0
        # every write starts at the cursor: the batch before it was acked (or is being resent)
        total = 40
        for depth, ids in log:
            assert ids[0] == total - depth + 1
        sent = [ids[0] for _, ids in log]
        # writes 2 and 5 failed (reset mid-write): only that batch is resent, halved (a mid-write reset
        # halves the next batch, and the one read ahead with it), then full batches again
        assert sent == [1, 11, 11, 16, 21, 21, 26, 31]
        assert [len(ids) for _, ids in log] == [10, 10, 5, 5, 10, 5, 5, 10]
        assert ahead[:2] == [10, 20]  # the next batch was read while the previous one was being written
    finally:
        await q.close()


_digits = st.sampled_from(["1", "9", "0", "a", " ", "\u0660", "-", ".", "e", ":", "12345678901234567"])
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(_digits, max_size=12).map("".join)
)
_docs = st.recursive(
    _numbers,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.lists(_digits, max_size=4).map("".join), inner, max_size=5)
    ),
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(_docs, st.sampled_from([None, 0, 2]))
def test_page_parser_keeps_big_integers_exact(doc: Any, indent: int | None) -> None:
    raw = json.dumps({"events": [doc]}, indent=indent, ensure_ascii=False).encode()
    assert _same(loads_page(raw), json.loads(raw))
    if re.search(rb"\d{19}", raw) is None:
        assert not has_long_digit_run(raw)


def test_long_digit_runs_inside_strings_use_the_fast_parser() -> None:
    assert has_long_digit_run(b'{"id": 18446744073709551616}')
    assert has_long_digit_run(b"[-18446744073709551616]")
    assert has_long_digit_run(b"18446744073709551616")
    assert not has_long_digit_run(b'{"id": 184467440737095516, "x": "\xd9\xa0"}')
    assert not has_long_digit_run(b'{"sha": "ab18446744073709551616", "h": ["18446744073709551616"]}')
    assert has_long_digit_run(b'{"sha": "ab18446744073709551616", "n": 18446744073709551616}')
    # a hex hash's "e" followed by 19 digits is inside a string; exponents and fractions of numbers are not
    assert not has_long_digit_run(b'{"ja3": ["f61bf1e71de6e6306406942102430844"]}')
    assert not has_long_digit_run(b'{"h": "x-1.5e+18446744073709551616"}')
    assert has_long_digit_run(b'{"f": 1.5e18446744073709551616}')
    assert has_long_digit_run(b'{"f": [0.18446744073709551616]}')
    assert has_long_digit_run(b'{"f":-1E+18446744073709551616}')
    assert has_long_digit_run(b'{"f":\n-18446744073709551616}')


async def test_an_id_beyond_64_bits_is_queued_and_sent_exactly(tmp_path: Path) -> None:
    """SQLite integers are 64-bit: such an id used to make every commit of the page fail (OverflowError),
    so the stream could never move on. Now the event is stored and sent unchanged; only the id-based
    dedupe skips it."""
    big = 2**64 + 1
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        assert await q.commit_page("audit", [{"id": 5}, {"id": big}, {"id": None}, {"x": 1}], 10) == 4
        batch = await q.read_batch("a", 10)
        assert batch is not None
        assert [e.event_id for e in batch.events] == [5, None, None, None]
        assert json.loads(batch.events[1].payload)["id"] == big
        assert batch.events[1].payload == json.dumps({"id": big})
        assert await q.checkpoint("audit") == 10
    finally:
        await q.close()
