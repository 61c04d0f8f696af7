"""Reading a real DurableQueue to the end in tests, as one server's writer would (read, then ack)."""

from __future__ import annotations

from siemconn.events.batch import QueuedEvent
from siemconn.queue import DurableQueue

__all__ = ["drain"]


async def drain(q: DurableQueue, dest: str, size: int = 1000) -> list[QueuedEvent]:
    """Every event left for `dest`, read and acked in batches of `size`, in order."""
    out: list[QueuedEvent] = []
    while (b := await q.read_batch(dest, size)) is not None:
        out.extend(b.events)
        await q.ack(b)
    return out
