"""One writer task per syslog server (siemconn.syslog.writer.ServerWriter), and what they are given.

Delivery is at-least-once: a batch is acked only after `Transport.write` returned; anything not acked is
read again and resent after a reconnect (the writer module says how).

The pool talks to the queue only through `QueueLike`, the complete contract (as httpx's transports do);
each writer is given the pool as its `WriterContext` only;
message timestamps come from the injected `wall_clock`. Metrics are always given (`NO_METRICS` when
nobody watches); queue_depth is the queue's to set, not the pool's.

retry_count and the backoff are a `RetryPolicy` (siemconn.syslog.retrypolicy), built from the
configuration unless one is given (a replay gives its own). When every server is down, `run()` raises
AllServersDownError (the service exits with code 3). Nothing queued is lost: the next start resends it.
The contracts the pool and its writers use are in siemconn.syslog.contracts.
Only failed connects count towards retry_count; a connect that succeeds ends the run. A batch reset
mid-write on an open connection is bounded by the writer's own backoff and batch halving
(siemconn.syslog.writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siemconn.config import Configuration, ServerConfig
from siemconn.errors import AllServersDownError
from siemconn.logging import get_logger
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.syslog.contracts import HealthLike, Opener, QueueLike, Sleep, StateListener, WallClock
from siemconn.syslog.heartbeat import HeartbeatSource
from siemconn.syslog.retrypolicy import BASE_BACKOFF, MAX_BACKOFF_CAP, RetryPolicy, backoff_delay
from siemconn.syslog.transport import DEFAULT_SETTLE_SECONDS, open_transport
from siemconn.syslog.wire import Oversize, PreparedBatch
from siemconn.syslog.writer import DOWN, IDLE_WAIT_SECONDS, TRUNCATION_LOG_EVERY, ServerWriter

__all__ = [
    "BASE_BACKOFF",
    "HealthLike",
    "HeartbeatSource",
    "IDLE_WAIT_SECONDS",
    "MAX_BACKOFF_CAP",
    "Opener",
    "Oversize",
    "PreparedBatch",
    "QueueLike",
    "RetryPolicy",
    "ServerWriter",
    "Sleep",
    "TRUNCATION_LOG_EVERY",
    "WallClock",
    "WriterPool",
    "backoff_delay",
]

log = get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, repr=False)
class WriterPool:
    """One writer task per server; `run()` until `stop()`, or AllServersDownError when all are down.

    The fields are what every writer of the pool is given (the collaborators and the timeouts); the
    settings taken from `configuration` are set after them."""

    servers: InitVar[list[ServerConfig]]
    queue: QueueLike
    configuration: InitVar[Configuration]
    cert_dir: Path
    _: KW_ONLY
    metrics: Metrics = NO_METRICS
    health: HealthLike | None = None
    wall_clock: WallClock = _utc_now
    sleep: Sleep = asyncio.sleep
    rand: Callable[[], float] = random.random
    opener: Opener = open_transport
    heartbeat_source: HeartbeatSource | None = None  # stream polls and quarantine counts for heartbeats
    monotonic: Callable[[], float] = time.monotonic  # heartbeat schedule
    on_state: StateListener | None = None
    connect_timeout: float = 10.0
    write_timeout: float = 60.0
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    retry_policy: InitVar[RetryPolicy | None] = None  # None: the configuration's retry_count and backoff

    def __post_init__(
        self, servers: list[ServerConfig], configuration: Configuration, retry_policy: RetryPolicy | None
    ) -> None:
        if not servers:
            raise ValueError("WriterPool needs at least one server")
        self.batch_size = configuration.batch_size
        drain = configuration.drain_batch_size
        self.drain_batch_size = self.batch_size if drain is None else max(drain, self.batch_size)
        self.drain_batch_bytes = configuration.drain_batch_bytes
        self.retry = retry_policy or RetryPolicy(
            configuration.retry_count, configuration.max_backoff_seconds, self.rand
        )
        self.server_streams = {s.name: configuration.server_streams(s) for s in servers}
        self._writers = {s.name: ServerWriter(self, s) for s in servers}
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def writer(self, name: str) -> ServerWriter:
        """The writer of server `name` (KeyError if the pool has none)."""
        return self._writers[name]

    def state(self, name: str) -> str:
        """starting | up | retrying | down | stopped."""
        return self._writers[name].state

    def states(self) -> dict[str, str]:
        return {name: w.state for name, w in self._writers.items()}

    def server_changed(self) -> None:
        self._changed.set()

    def state_changed(self, name: str, state: str, reason: str = "") -> None:
        """A writer's state changed (up, retrying, down): tell the listener (the service records it)."""
        if self.on_state is not None:
            self.on_state(name, state, reason)

    async def until_stopped(self, aw: Awaitable[Any]) -> None:
        """Await `aw`, or return early (cancelling it) when stop() is called."""
        if self.stopping:
            if asyncio.iscoroutine(aw):
                aw.close()
            return
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, stop):
                if not t.done():
                    t.cancel()
                    with contextlib.suppress(BaseException):
                        await t
        if task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise exc

    def adopt(self, old: WriterPool, names: Sequence[str]) -> list[str]:
        """Before `run()`: take over the open connections `old` kept (`stop(keep=names)`); the names of the
        servers whose connection was taken over."""
        kept = []
        for name in names:
            if name in self._writers and name in old._writers:
                if self._writers[name].take_over(old._writers[name]):
                    kept.append(name)
        return kept

    async def close_kept(self) -> None:
        """Close the connections a stopped pool kept that no other pool took over."""
        for w in self._writers.values():
            if w.transport is not None:
                await w.close_connection()

    def _all_down(self) -> bool:
        return all(w.state == DOWN for w in self._writers.values())

    async def run(self) -> None:
        """Deliver until stop(); raise AllServersDownError when every server is down."""
        self._tasks = {
            name: asyncio.create_task(w.run(), name=f"syslog-writer-{name}")
            for name, w in self._writers.items()
        }
        try:
            while True:
                changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait(
                    {changed, *self._tasks.values()}, return_when=asyncio.FIRST_COMPLETED
                )
                if not changed.done():
                    changed.cancel()
                self._changed.clear()
                for t in done:
                    if t is not changed and not t.cancelled():
                        exc = t.exception()
                        if exc is not None:
                            raise exc
                if self._all_down() and not self.stopping:
                    reasons = "; ".join(
                        w.reason if w.reason.startswith("syslog server ") else f"{w.server.label}: {w.reason}"
                        for w in self._writers.values()
                    )
                    raise AllServersDownError(
                        f"every syslog server is down ({reasons}); undelivered events stay queued and are "
                        "sent after a restart. Check the servers, or set retry_count negative to retry "
                        "forever"
                    )
                if all(t.done() for t in self._tasks.values()):
                    return
        finally:
            self._stop_event.set()
            await self._finish(timeout=10.0)

    async def stop(self, timeout: float, *, keep: Sequence[str] = ()) -> None:
        """Stop: in-flight batches finish (flushed and acked) within `timeout`, then connections close,
        except those of the servers in `keep` (a reload hands them to the next pool: `adopt`)."""
        for name in keep:
            if name in self._writers:
                self._writers[name].keep_open = True
        self._stop_event.set()
        self._changed.set()
        await self._finish(timeout)

    async def _finish(self, timeout: float) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()  # an unacked batch stays queued and is resent on the next start
        if pending:
            log.warning("syslog_writers_cancelled", servers=[t.get_name() for t in pending], timeout=timeout)
            await asyncio.wait(pending, timeout=5.0)
