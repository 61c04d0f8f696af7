"""One writer task per syslog server: read_batch -> format -> frame -> write -> flush -> ack.

Delivery is at-least-once. A batch is acked only after `Transport.write` returned (TCP/TLS: flushed and
acknowledged by the peer's TCP stack; RELP: every message answered `rsp 200`); anything not acked is read
again and resent after a reconnect.

Formatting and framing a batch is `siemconn.syslog.wire.prepare_batch`; the chunks given to
`Transport.write` are not one per event, so event counts (delivered, failed) come from the batch.

The pool talks to the queue only through `QueueLike`, the complete contract (as httpx's transports do);
message timestamps come from the injected `wall_clock`. Metrics are always given (`NO_METRICS` when
nobody watches); queue_depth is the queue's to set, not the pool's.

retry_count, the reference's "retries before exiting when the server is not reachable", made safe:

- N >= 0: after the first failure and N failed retries in a row, the server is declared DOWN (logged once,
  with the reason). It keeps its backlog in the queue and is re-probed with capped backoff (<= 5 min);
  the other servers are served meanwhile. When every server is down, `run()` raises AllServersDownError
  (the service exits with code 3). Nothing queued is lost: the next start resends it.
- N < 0: a server is never declared down; it is retried forever.

Backlog drain (`drain_batch_size`, off by default): while more than one drain batch is queued behind the
batch on the wire, a writer reads up to `drain_batch_size` events per batch, capped at about
`drain_batch_bytes` of wire bytes (estimated from the previous batch's bytes per event), so the TCP ack
wait and the settle time are paid once per larger batch. Still at most one batch is unacknowledged, so
the resend (duplicate) bound after a receiver crash is one batch: `drain_batch_size` events while
draining, `batch_size` otherwise.

Backoff: 0.5 s doubling per consecutive failure, capped at min(max_backoff_seconds, 300), times a random
factor in [0.5, 1) so that many connectors do not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from siemconn.config import Configuration, ServerConfig
from siemconn.errors import (
    AllServersDownError,
    DeliveryError,
    QueueUnavailableError,
    SyslogError,
    TlsConfigError,
)
from siemconn.logging import get_logger
from siemconn.ops.metrics import NO_METRICS, Metrics, emit
from siemconn.queue import Batch
from siemconn.queue.quarantine import Rejected
from siemconn.syslog.format import Formatter
from siemconn.syslog.transport import DEFAULT_SETTLE_SECONDS, Transport, build_tls_context, open_transport
from siemconn.syslog.wire import Oversize, PreparedBatch, prepare_batch

__all__ = [
    "BASE_BACKOFF",
    "HealthLike",
    "IDLE_WAIT_SECONDS",
    "MAX_BACKOFF_CAP",
    "Opener",
    "Oversize",
    "PreparedBatch",
    "QueueLike",
    "ServerWriter",
    "Sleep",
    "TRUNCATION_LOG_EVERY",
    "WallClock",
    "WriterPool",
    "backoff_delay",
]

log = get_logger(__name__)

MAX_BACKOFF_CAP = 300.0
BASE_BACKOFF = 0.5
IDLE_WAIT_SECONDS = 5.0
TRUNCATION_LOG_EVERY = 1000
FALLBACK_LOG_EVERY = 1000
ACK_RETRY_SECONDS = 1.0

# writer states
STARTING, UP, RETRYING, DOWN, STOPPED = "starting", "up", "retrying", "down", "stopped"


class QueueLike(Protocol):
    """The whole contract between the pool and the queue (siemconn.queue.DurableQueue implements it; so does
    the tests' in-memory queue). Reading never advances a destination; ack() does, in read order."""

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


def backoff_delay(failures: int, cap: float, rand: float) -> float:
    """Seconds to wait after `failures` consecutive failures (>= 1); `rand` in [0, 1)."""
    cap = min(cap, MAX_BACKOFF_CAP)
    exp = BASE_BACKOFF * float(2 ** min(failures - 1, 30))
    return min(cap, exp) * (0.5 + 0.5 * rand)


class ServerWriter:
    """Delivers one server's cursor: connect, `prepare` (format and frame a batch), write, ack."""

    def __init__(self, pool: WriterPool, server: ServerConfig) -> None:
        self.pool = pool
        self.server = server
        self.name = server.name
        self.state = STARTING
        self.failures = 0
        self.reason = ""
        self.transport: Transport | None = None
        self.formatter = Formatter(server)
        self._tls_ctx: ssl.SSLContext | None = None
        self._ever_connected = False
        self._truncations = 0
        self._prefetch: asyncio.Future[PreparedBatch | None] | None = None
        self._event_bytes = 0.0  # wire bytes per event of the last batch (0: none formatted yet)
        self._fallbacks = 0
        m = pool.metrics
        # UDP has no acknowledgement: its events are counted as sent, never as delivered
        accepted = m.events_sent if server.server_protocol == "UDP" else m.events_delivered
        self._m_delivered = accepted.labels(self.name)
        self._m_failed = m.events_failed.labels(self.name)
        self._m_truncated = m.events_truncated.labels(self.name)
        self._m_fallbacks = m.format_fallbacks.labels(self.name, "event_time_unusable")
        self._m_reconnects = m.reconnects.labels(self.name)
        self._m_up = m.server_up.labels(self.name)
        self._m_up.set(0)

    # --- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        pool = self.pool
        try:
            while not pool.stopping:
                if self.transport is None or self.transport.is_closing():
                    if not await self._connect():
                        continue
                prepared = await self._take_prefetched()
                if prepared is None:
                    batch = await pool.queue.read_batch(self.name, await self._batch_limit(0))
                    if batch is None or not len(batch):
                        self.failures = 0  # connected and nothing to send
                        await pool.until_stopped(pool.queue.wait_for_data(self.name, IDLE_WAIT_SECONDS))
                        continue
                    prepared = self.prepare(batch)
                await self._deliver(prepared)
        finally:
            await self._drop_prefetched()
            await self._close()
            self.state = STOPPED
            self._m_up.set(0)

    async def _connect(self) -> bool:
        pool = self.pool
        if self._ever_connected or self.failures:
            self._m_reconnects.inc()
        try:
            if self.server.uses_tls and self._tls_ctx is None:
                self._tls_ctx = build_tls_context(self.server, pool.cert_dir)
            self.transport = await pool.opener(
                self.server,
                pool.cert_dir,
                connect_timeout=pool.connect_timeout,
                tls_context=self._tls_ctx,
                settle_seconds=pool.settle_seconds,
            )
        except TlsConfigError as exc:
            self._tls_ctx = None  # rebuilt next time: fixed files are picked up without a restart
            await self._failed(str(exc))
            return False
        except (DeliveryError, OSError, TimeoutError) as exc:
            await self._failed(str(exc) or type(exc).__name__)
            return False
        previous = self.state
        self.state = UP
        if previous != UP:
            pool.state_changed(self.name, UP)
        self._ever_connected = True
        if previous in (RETRYING, DOWN):
            log.info("syslog_server_recovered", server=self.server.label, after_failures=self.failures)
        else:
            log.info("syslog_server_connected", server=self.server.label)
        self._m_up.set(1)
        if pool.health is not None:
            pool.health.server_ok(self.name)
        pool.server_changed()
        return True

    async def _failed(self, reason: str) -> None:
        """One failed connect or write: count it, maybe declare the server down, then back off."""
        pool = self.pool
        self.failures += 1
        self.reason = reason
        self._m_up.set(0)
        if self.transport is not None:
            await self._close()
        first = self.state in (STARTING, UP)
        if first and pool.health is not None:
            pool.health.server_failed(self.name, reason)
        retry = pool.retry_count
        delay = backoff_delay(self.failures, pool.max_backoff, pool.rand())
        if retry >= 0 and self.failures > retry and self.state != DOWN:
            self.state = DOWN
            pool.state_changed(self.name, DOWN, reason)
            depth = await pool.queue.depth(self.name)
            log.error(
                "syslog_server_down",
                server=self.server.label,
                reason=reason,
                failures=self.failures,
                retry_count=retry,
                backlog=depth,
                next_probe_seconds=round(delay, 1),
                hint="events stay queued for this server and are sent when it comes back",
            )
            if pool.health is not None and not first:
                pool.health.server_failed(self.name, reason)
            pool.server_changed()
        elif self.state == DOWN:
            log.debug(
                "syslog_server_probe_failed",
                server=self.server.label,
                reason=reason,
                retry_in_seconds=round(delay, 1),
            )
        else:
            if first:
                log.warning("syslog_server_lost", server=self.server.label, reason=reason)
            if self.state != RETRYING:
                pool.state_changed(self.name, RETRYING, reason)
            self.state = RETRYING
            log.info(
                "syslog_server_retrying",
                server=self.server.label,
                attempt=self.failures,
                retry_in_seconds=round(delay, 2),
                reason=reason,
            )
        await pool.until_stopped(pool.sleep(delay))

    async def _take_prefetched(self) -> PreparedBatch | None:
        task, self._prefetch = self._prefetch, None
        return None if task is None else await task

    async def _drop_prefetched(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _batch_limit(self, in_flight: int) -> int:
        """Events to read next: `batch_size`, or, while the backlog behind the `in_flight` events on the wire
        is larger than one drain batch, up to `drain_batch_size` events of about `drain_batch_bytes`."""
        pool = self.pool
        drain = pool.drain_batch_size
        if drain <= pool.batch_size or self._event_bytes <= 0:
            return pool.batch_size
        if await pool.queue.depth(self.name) - in_flight <= drain:
            return pool.batch_size
        return max(pool.batch_size, min(drain, int(pool.drain_batch_bytes / self._event_bytes)))

    async def _read_prepared(self, start_seq: int, in_flight: int) -> PreparedBatch | None:
        limit = await self._batch_limit(in_flight)
        batch = await self.pool.queue.read_batch_from(self.name, start_seq, limit)
        if batch is None or not len(batch):
            return None
        return self.prepare(batch)

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Format and frame a batch for this server (the CPU part of a delivery, done before the write)."""
        prepared = prepare_batch(batch, self.server, self.formatter, self.pool.wall_clock())
        if prepared.events:
            self._event_bytes = sum(map(len, prepared.frames)) / prepared.events
        return prepared

    async def _deliver(self, prepared: PreparedBatch) -> None:
        """Write, then ack. While the write waits for the peer's TCP ack and the settle time, the next
        batch (after this one) is read and formatted; it is written only after this one was acked, and
        dropped if this write fails, so at most one batch is ever unacked on the wire."""
        pool = self.pool
        batch, frames = prepared.batch, prepared.frames
        assert self.transport is not None
        if not pool.stopping:
            self._prefetch = asyncio.ensure_future(self._read_prepared(batch.end_seq, prepared.events))
        try:
            if frames:
                await asyncio.wait_for(self.transport.write(frames), pool.write_timeout)
        except (SyslogError, OSError, TimeoutError) as exc:
            await self._drop_prefetched()
            reason = str(exc) or f"write timed out after {pool.write_timeout:g} s"
            self._m_failed.inc(prepared.events)
            await self._failed(reason)
            return
        except BaseException:
            await self._drop_prefetched()
            raise
        if not await self._record_delivery(prepared):
            return
        self._m_delivered.inc(prepared.sent)
        self.failures = 0
        if prepared.oversize is not None:
            self._report_oversize(prepared.oversize)
        if prepared.fallbacks:
            self._report_fallbacks(prepared.fallbacks, prepared.fallback_detail)

    async def _record_delivery(self, prepared: PreparedBatch) -> bool:
        """Quarantine the batch's unformattable events, then ack it. A queue that cannot be written (disk
        full) is retried here, not raised: the writer stays alive and the batch is not resent. False when
        stopping first (the batch stays unacked and is resent after the restart, at most once)."""
        while True:
            try:
                if prepared.rejected:
                    for stream, rejects in prepared.rejected.items():
                        await self.pool.queue.quarantine(self.name, stream, rejects)
                    prepared.rejected = None
                await self.pool.queue.ack(prepared.batch)
                return True
            except QueueUnavailableError as exc:
                log.error(
                    "queue_ack_failed",
                    server=self.server.label,
                    error=str(exc),
                    retry_in_seconds=ACK_RETRY_SECONDS,
                    detail="the batch was delivered; its ack is retried (nothing is lost or resent)",
                )
                if self.pool.stopping:
                    return False
                await self.pool.until_stopped(self.pool.sleep(ACK_RETRY_SECONDS))
                if self.pool.stopping:
                    return False

    def _report_fallbacks(self, count: int, detail: str) -> None:
        self._m_fallbacks.inc(count)
        before = self._fallbacks
        self._fallbacks += count
        if before == 0 or before // FALLBACK_LOG_EVERY != self._fallbacks // FALLBACK_LOG_EVERY:
            log.warning(
                "syslog_event_time_unusable",
                server=self.server.label,
                total=self._fallbacks,
                last_problem=detail,
                detail="sent with the send time as TIMESTAMP; the payload is unchanged",
            )

    def _report_oversize(self, o: Oversize) -> None:
        for event_id in o.dropped_ids or []:
            emit(
                log.warning,
                "syslog_udp_event_dropped",
                self._m_truncated,
                server=self.server.label,
                event_id=event_id,
                max_message_size=self.server.max_message_size,
                hint="use TCP or TLS for this server, or udp_oversize 'truncate'",
            )
        if o.truncated:
            self._m_truncated.inc(o.truncated)  # logged every TRUNCATION_LOG_EVERY, counted every time
            before = self._truncations
            self._truncations += o.truncated
            if before == 0 or before // TRUNCATION_LOG_EVERY != self._truncations // TRUNCATION_LOG_EVERY:
                log.warning(
                    "syslog_udp_events_truncated",
                    server=self.server.label,
                    total=self._truncations,
                    max_message_size=self.server.max_message_size,
                    hint="use TCP or TLS for this server to send large events whole",
                )

    async def _close(self) -> None:
        t, self.transport = self.transport, None
        if t is not None:
            with contextlib.suppress(Exception):
                await t.close()


class WriterPool:
    """One writer task per server; `run()` until `stop()`, or AllServersDownError when all are down."""

    def __init__(
        self,
        servers: list[ServerConfig],
        queue: QueueLike,
        configuration: Configuration,
        cert_dir: Path,
        *,
        metrics: Metrics = NO_METRICS,
        health: HealthLike | None = None,
        wall_clock: WallClock = lambda: datetime.now(UTC),
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        opener: Opener = open_transport,
        on_state: StateListener | None = None,
        connect_timeout: float = 10.0,
        write_timeout: float = 60.0,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    ) -> None:
        if not servers:
            raise ValueError("WriterPool needs at least one server")
        self.queue = queue
        self.cert_dir = cert_dir
        self.metrics = metrics
        self.health = health
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.rand = rand
        self.opener = opener
        self.on_state = on_state
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.settle_seconds = settle_seconds
        self.batch_size = configuration.batch_size
        drain = configuration.drain_batch_size
        self.drain_batch_size = self.batch_size if drain is None else max(drain, self.batch_size)
        self.drain_batch_bytes = configuration.drain_batch_bytes
        self.retry_count = configuration.retry_count
        self.max_backoff = min(configuration.max_backoff_seconds, MAX_BACKOFF_CAP)
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

    async def stop(self, timeout: float) -> None:
        """Stop: in-flight batches finish (flushed and acked) within `timeout`, then connections close."""
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
