"""Queue helpers for tests: events with event times, and reading a real DurableQueue to the end as one
server's writer would (read, then ack)."""

from __future__ import annotations

import time
from typing import Any

from siemconn.events.batch import QueuedEvent
from siemconn.queue import DurableQueue

__all__ = ["T0", "drain", "timed_events", "utc_time"]

T0 = 1_780_000_000.0  # a fixed event time base (2026-05-28)


def utc_time(t: float) -> str:
    """`t` (epoch seconds) as the API writes an event_timestamp, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def timed_events(ids: range | list[int], base: float = T0, step: float = 60.0) -> list[dict[str, Any]]:
    """Events whose event_timestamp is base + (id - first) * step."""
    ids = list(ids)
    return [{"id": i, "event_timestamp": utc_time(base + (i - ids[0]) * step), "msg": "x"} for i in ids]


async def drain(q: DurableQueue, dest: str, size: int = 1000) -> list[QueuedEvent]:
    """Every event left for `dest`, read and acked in batches of `size`, in order."""
    out: list[QueuedEvent] = []
    while (b := await q.read_batch(dest, size)) is not None:
        out.extend(b.events)
        await q.ack(b)
    return out
