"""`ReplayFeed`: the writer's queue contract (`siemconn.syslog.contracts.WriterQueue`) for one replay, over
`DurableQueue` (the replay's requests, windows and progress are `siemconn.queue.replay`'s).

Invariant: the replay's durable position moves only in `ack`, after the server accepted a batch, so a
restart resumes the replay without loss and resends at most one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from siemconn.events.batch import Batch
from siemconn.events.rejected import Rejected
from siemconn.queue.replay import ReplayRequest
from siemconn.queue.store import DurableQueue

__all__ = ["ReplayFeed"]


class ReplayFeed:
    """The writer pool's queue contract (`siemconn.syslog.contracts.QueueLike`) for one replay: batches come
    from `DurableQueue.read_replay`, acks move the replay's durable position. `done` is set once every
    page of the replay was acked."""

    def __init__(self, queue: DurableQueue, request: ReplayRequest) -> None:
        self.queue = queue
        self.request = request
        self.done = asyncio.Event()
        self._position = request.position if request.position is not None else request.start_seq or 0
        self._end = request.end_seq or 0
        self.events = request.events

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        return await self.read_batch_from(destination, self._position, max_events)

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        if start_seq >= self._end:
            if start_seq <= self._position:
                self.done.set()
            return None
        return await self.queue.read_replay(self.request, start_seq, max_events)

    async def ack(self, batch: Batch) -> None:
        if batch.end_seq <= self._position:
            return
        sent = sum(len(s.payloads) for s in batch.segments)
        await self.queue.replay_progress(self.request.id, batch.end_seq, sent)
        self._position = batch.end_seq
        self.events += sent
        if self._position >= self._end:
            self.done.set()

    async def quarantine(self, destination: str, stream: str, rejects: Sequence[Rejected]) -> None:
        """A replayed event the formatter refuses is quarantined for that server, as on the live path."""
        await self.queue.quarantine(destination, stream, rejects)

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        if self._position >= self._end:
            self.done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)

    async def depth(self, destination: str) -> int:
        return max(0, self._end - self._position)

    async def oldest_age(self, destination: str) -> float | None:
        return None
