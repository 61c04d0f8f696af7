"""The queue's value types: what a destination reads (`Batch`), page by page (`Segment`), and the
per-event view some callers want (`QueuedEvent`).

Invariant: a Batch covers the contiguous events [start_seq, end_seq) of one destination; its segments hold
exactly those events, in order, at most one segment per stored page, with payloads as stored (not decoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat

__all__ = ["Batch", "QueuedEvent", "Segment"]


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One queued event: its stream (syslog MSGID), RUX event id if any, and the JSON payload to send."""

    stream: str
    event_id: int | None
    payload: str


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive events of one page: their stream, ids and payloads (JSON, ASCII bytes, no newline).

    `ids` and `payloads` have the same length (>= 1); the payloads are the stored bytes, not decoded.
    """

    stream: str
    ids: list[int | None]
    payloads: list[bytes]


@dataclass(frozen=True, slots=True)
class Batch:
    """Events [start_seq, end_seq) read for one destination; ack() it after the destination accepted it.

    The events are held as `segments`, at most one per page touched, in order: the writer formats a
    segment as a whole. `events` builds one `QueuedEvent` (payload as `str`) per event on first use.
    """

    destination: str
    segments: list[Segment]
    start_seq: int
    end_seq: int
    _events: list[QueuedEvent] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.end_seq - self.start_seq

    @property
    def events(self) -> list[QueuedEvent]:
        """The batch as one `QueuedEvent` per event (built once, then cached)."""
        events = self._events
        if events is None:
            events = []
            for seg in self.segments:
                events.extend(
                    map(
                        QueuedEvent,
                        repeat(seg.stream, len(seg.payloads)),
                        seg.ids,
                        [p.decode("utf-8") for p in seg.payloads],
                    )
                )
            object.__setattr__(self, "_events", events)
        return events
