"""What a syslog writer is given, as Protocols (as httpx states its transport contract): the queue it
reads and acks (`QueueLike`), the health it reports to (`HealthLike`), and the whole of its context
(`WriterContext`: the collaborators, the settings and the stop signal), which `WriterPool` provides and a
writer never reaches past. The callables a pool injects (`Sleep`, `WallClock`, `Opener`, `StateListener`)
are named here too, so tests and replays can give their own.

Invariant: a writer acks a batch only after the server accepted it; reading never advances a destination
(`QueueLike.ack` does, in read order).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from siemconn.events.batch import Batch
from siemconn.events.rejected import Rejected
from siemconn.ops.metrics import Metrics
from siemconn.syslog.heartbeat import HeartbeatSource
from siemconn.syslog.retrypolicy import RetryPolicy
from siemconn.syslog.transport import Transport

__all__ = ["HealthLike", "Opener", "QueueLike", "Sleep", "StateListener", "WallClock", "WriterContext"]


class QueueLike(Protocol):
    """The whole contract between the pool and the queue (siemconn.queue.DurableQueue implements it; so does
    siemconn.syslog.memqueue.MemQueue, in memory). Reading never advances a destination; ack() does, in
    read order."""

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        """Up to max_events undelivered events of destination from its cursor, or None."""
        ...

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        """Like read_batch, from start_seq (>= the cursor): the batch after one not yet acked."""
        ...

    async def ack(self, batch: Batch) -> None:
        """Durably move batch.destination's cursor to batch.end_seq."""
        ...

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        """Return when destination has undelivered events, or after timeout."""
        ...

    async def depth(self, destination: str) -> int:
        """Undelivered events of destination."""
        ...

    async def oldest_age(self, destination: str) -> float | None:
        """Seconds since the oldest undelivered event of destination was committed, or None."""
        ...

    async def quarantine(self, destination: str, stream: str, rejects: Sequence[Rejected]) -> None:
        """Durably keep events destination's formatter refused, before the batch holding them is acked."""
        ...


class HealthLike(Protocol):
    """What the pool reports to the health state (siemconn's Health)."""

    def server_ok(self, name: str) -> None: ...
    def server_failed(self, name: str, reason: str) -> None: ...


Sleep = Callable[[float], Awaitable[None]]
StateListener = Callable[[str, str, str], None]  # (server name, new state, reason)
WallClock = Callable[[], datetime]
Opener = Callable[..., Awaitable[Transport]]


class WriterContext(Protocol):
    """Everything a `ServerWriter` uses of its pool: collaborators, settings, the stop signal and the
    listeners it tells about state changes (read-only: a writer never replaces what it is given)."""

    @property
    def queue(self) -> QueueLike: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def health(self) -> HealthLike | None: ...
    @property
    def cert_dir(self) -> Path: ...
    @property
    def wall_clock(self) -> WallClock: ...
    @property
    def sleep(self) -> Sleep: ...
    @property
    def opener(self) -> Opener: ...
    @property
    def heartbeat_source(self) -> HeartbeatSource | None: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def write_timeout(self) -> float: ...
    @property
    def settle_seconds(self) -> float: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def drain_batch_size(self) -> int: ...
    @property
    def drain_batch_bytes(self) -> int: ...
    @property
    def retry(self) -> RetryPolicy: ...
    @property
    def server_streams(self) -> Mapping[str, Any]: ...

    @property
    def stopping(self) -> bool: ...
    def server_changed(self) -> None: ...
    def state_changed(self, name: str, state: str, reason: str = "") -> None: ...
    async def until_stopped(self, aw: Awaitable[Any]) -> None: ...
