"""An in-memory stand-in for siemconn.queue.DurableQueue's delivery side (read_batch / ack / wait_for_data /
depth), with the same semantics: reading does not advance a destination's cursor, only ack does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from siemconn.syslog.format import encode_event


@dataclass(frozen=True)
class QueuedEvent:
    stream: str
    event_id: int | None
    payload: str


@dataclass(frozen=True)
class Batch:
    destination: str
    start: int
    events: list[QueuedEvent] = field(default_factory=list)


class MemQueue:
    """Events in one list; one cursor per destination."""

    def __init__(self, destinations: Iterable[str]) -> None:
        self.events: list[QueuedEvent] = []
        self.cursors: dict[str, int] = {d: 0 for d in destinations}
        self.acks: dict[str, list[Batch]] = {d: [] for d in self.cursors}
        self.reads: dict[str, int] = {d: 0 for d in self.cursors}
        self.quarantined: list[tuple[str, str, Any]] = []  # (destination, stream, Rejected)
        self._data = asyncio.Event()

    def put(self, stream: str, events: Iterable[dict]) -> list[QueuedEvent]:
        new = [QueuedEvent(stream, e.get("id"), encode_event(e)) for e in events]
        self.events.extend(new)
        self._data.set()
        return new

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        self.reads[destination] += 1
        start = self.cursors[destination]
        if start >= len(self.events):
            return None
        return Batch(destination, start, self.events[start : start + max_events])

    async def ack(self, batch: Batch) -> None:
        if self.cursors[batch.destination] != batch.start:
            raise AssertionError(f"ack of a stale batch for {batch.destination}")
        self.cursors[batch.destination] = batch.start + len(batch.events)
        self.acks[batch.destination].append(batch)

    async def quarantine(self, destination: str, stream: str, rejects: Iterable[Any]) -> None:
        self.quarantined.extend((destination, stream, r) for r in rejects)

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        if self.cursors[destination] < len(self.events):
            return
        self._data.clear()
        try:
            await asyncio.wait_for(self._data.wait(), timeout)
        except TimeoutError:
            pass

    async def depth(self, destination: str) -> int:
        return len(self.events) - self.cursors[destination]

    def acked(self, destination: str) -> list[QueuedEvent]:
        return self.events[: self.cursors[destination]]
