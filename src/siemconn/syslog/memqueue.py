"""An in-memory implementation of the queue contract the writer pool uses (siemconn.syslog.contracts.QueueLike),
with DurableQueue's semantics: one page per put(), batches of `Segment`s (at most one per page, payloads as
bytes), reading never advances a destination's cursor, only ack() does, and acks must come in read order.

It lives next to the contract it implements, not only in the tests, so that a writer can be tried
without a queue file (the tests, the benches and an embedding program use it alike)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from siemconn.events.batch import Batch, QueuedEvent, Segment
from siemconn.events.encoder import encode_event, event_id

__all__ = ["MemQueue", "cursor_at"]


@dataclass(frozen=True)
class _Page:
    first_seq: int
    stream: str
    ids: list[int | None]
    payloads: list[bytes]
    committed_at: float


class MemQueue:
    """Pages in one list; one cursor per destination."""

    def __init__(self, destinations: Iterable[str], *, clock: Callable[[], float] = time.time) -> None:
        self.events: list[QueuedEvent] = []
        self.pages: list[_Page] = []
        self.cursors: dict[str, int] = {d: 0 for d in destinations}
        self.acks: dict[str, list[Batch]] = {d: [] for d in self.cursors}
        self.reads: dict[str, int] = {d: 0 for d in self.cursors}
        self._clock = clock
        self.quarantined: list[tuple[str, str, Any]] = []  # (destination, stream, Rejected)
        self._data = asyncio.Event()

    def put(self, stream: str, events: Iterable[Mapping[str, Any]]) -> list[QueuedEvent]:
        """Queue one page of events (the stream name is the syslog MSGID)."""
        new = [QueuedEvent(stream, event_id(e), encode_event(e)) for e in events]
        if new:
            self.pages.append(
                _Page(
                    len(self.events),
                    stream,
                    [e.event_id for e in new],
                    [e.payload.encode("ascii") for e in new],
                    self._clock(),
                )
            )
            self.events.extend(new)
            self._data.set()
        return new

    def _cursor(self, destination: str) -> int:
        if destination not in self.cursors:
            raise KeyError(f"unknown destination {destination!r}")
        return self.cursors[destination]

    def _read(self, destination: str, start: int, max_events: int) -> Batch | None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        head = len(self.events)
        if start >= head:
            return None
        segments: list[Segment] = []
        count = 0
        for page in self.pages:
            end = page.first_seq + len(page.payloads)
            pos = start + count
            if end <= pos:
                continue
            off = pos - page.first_seq
            take = min(len(page.payloads) - off, max_events - count)
            segments.append(Segment(page.stream, page.ids[off : off + take], page.payloads[off : off + take]))
            count += take
            if count >= max_events:
                break
        return Batch(destination, segments, start, start + count)

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        self.reads[destination] += 1
        return self._read(destination, self._cursor(destination), max_events)

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        self.reads[destination] += 1
        cur = self._cursor(destination)
        if start_seq < cur:
            raise AssertionError(f"read_batch_from {destination}: {start_seq} is before the cursor {cur}")
        return self._read(destination, start_seq, max_events)

    async def ack(self, batch: Batch) -> None:
        cur = self._cursor(batch.destination)
        if batch.start_seq > cur:
            raise AssertionError(f"ack of {batch.destination} would skip events from {cur}")
        if batch.end_seq <= cur:
            return  # already acked
        self.cursors[batch.destination] = batch.end_seq
        self.acks[batch.destination].append(batch)

    async def quarantine(self, destination: str, stream: str, rejects: Iterable[Any]) -> None:
        self.quarantined.extend((destination, stream, r) for r in rejects)

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        if self._cursor(destination) < len(self.events):
            return
        self._data.clear()
        try:
            await asyncio.wait_for(self._data.wait(), timeout)
        except TimeoutError:
            pass

    async def depth(self, destination: str) -> int:
        return len(self.events) - self._cursor(destination)

    async def oldest_age(self, destination: str) -> float | None:
        cur = self._cursor(destination)
        for page in self.pages:
            if page.first_seq + len(page.payloads) > cur:
                return max(0.0, self._clock() - page.committed_at)
        return None

    def acked(self, destination: str) -> list[QueuedEvent]:
        return self.events[: self.cursors[destination]]


def cursor_at(q: MemQueue, destination: str, seq: int) -> Callable[[], bool]:
    """A `wait_until` condition: `destination` has acked everything before `seq`."""
    return lambda: q.cursors[destination] == seq
