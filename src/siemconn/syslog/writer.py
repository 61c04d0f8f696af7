"""One server's delivery loop: read_batch -> format -> frame -> write -> ack, with reconnects.

Delivery is at-least-once. A batch is acked only after `Transport.write` returned (TCP/TLS: flushed and
acknowledged by the peer's TCP stack; RELP: every message answered `rsp 200`); anything not acked is read
again and resent after a reconnect. At most one batch is unacknowledged on the wire: the next batch is
read and formatted while the write waits, written only after this one was acked, and dropped if the
write fails.

Formatting and framing a batch is `siemconn.syslog.wire.prepare_batch`; the chunks given to
`Transport.write` are not one per event, so event counts (delivered, failed) come from the batch. A
queue that cannot take the ack (disk full) is retried in place: the delivered batch is not resent.

Backlog drain (`drain_batch_size`, off by default): while more than one drain batch is queued behind the
batch on the wire, a writer reads up to `drain_batch_size` events per batch, capped at about
`drain_batch_bytes` of wire bytes (estimated from the previous batch's bytes per event), so the TCP ack
wait and the settle time are paid once per larger batch. Still at most one batch is unacknowledged, so
the resend (duplicate) bound after a receiver crash is one batch: `drain_batch_size` events while
draining, `batch_size` otherwise.

In-band heartbeat (`heartbeat_seconds`, off by default; siemconn.syslog.heartbeat): when one is due, the
writer sends it between two batches, as a write of its own on the same connection, and an idle writer wakes
up for it. A failed heartbeat write is a failed write (reconnect, backoff); no heartbeat is queued.
Failures and `retry_count` (the README's promise): `failures` counts consecutive failed *connects*, and a
connect that succeeds ends the run of failures, so only a server that cannot be reached for `retry_count`
reconnects in a row is declared down. A batch whose write fails on a connection that had opened (the
receiver reset it mid-write) is not a failed reconnect; it is counted in `resets` instead, bounded another
way: each consecutive reset backs off like a failed connect (capped at max_backoff_seconds) and halves the
next batch (down to one event), so a receiver that keeps resetting is retried at most once per backoff
period and cannot make an event it refuses hold back the events before it. From the
`RESETS_REPORTED_AFTER`-th consecutive reset `syslog_writes_reset` is logged as an error, once per run
of resets. `resets` goes back to 0 after a delivered batch. UDP has no connection to reset: a failed send
(ICMP port unreachable) counts as a failed reconnect, and only a delivered batch ends the run.

The writer owns nothing it is given: the queue, the clock, the sleep, the opener and the settings are
its context's (`siemconn.syslog.contracts.WriterContext`, which the pool provides), and so is the
`RetryPolicy` that says how long to back off after a failure and when the server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, SyslogError, TlsConfigError
from siemconn.events.batch import Batch
from siemconn.logging import get_logger
from siemconn.syslog.acking import record_delivery
from siemconn.syslog.budget import Oversizer
from siemconn.syslog.contracts import WriterContext
from siemconn.syslog.format import Formatter
from siemconn.syslog.heartbeat import HeartbeatSchedule, gather_facts, heartbeat_wire
from siemconn.syslog.transport import Transport, build_tls_context
from siemconn.syslog.wire import PreparedBatch, prepare_batch
from siemconn.syslog.writer_report import TRUNCATION_LOG_EVERY, WriterReport

__all__ = [
    "DOWN",
    "IDLE_WAIT_SECONDS",
    "RESETS_REPORTED_AFTER",
    "RETRYING",
    "STARTING",
    "STOPPED",
    "TRUNCATION_LOG_EVERY",
    "UP",
    "ServerWriter",
]

log = get_logger(__name__)

IDLE_WAIT_SECONDS = 5.0
RESETS_REPORTED_AFTER = 3  # consecutive batches reset mid-write before the error line

# writer states
STARTING, UP, RETRYING, DOWN, STOPPED = "starting", "up", "retrying", "down", "stopped"


class ServerWriter:
    """Delivers one server's cursor: connect, `prepare` (format and frame a batch), write, ack."""

    def __init__(self, ctx: WriterContext, server: ServerConfig) -> None:
        self.ctx = ctx
        self.server = server
        self.name = server.name
        self.state = STARTING
        self.failures = 0  # consecutive failed connects (what retry_count counts)
        self.resets = 0  # consecutive batches whose write failed on an open connection
        self.reason = ""
        self.transport: Transport | None = None
        self.formatter = Formatter(server)
        self.oversizer = Oversizer(server, self.formatter)
        self._tls_ctx: ssl.SSLContext | None = None
        self.keep_open = False  # set by a reload that keeps this server: run() leaves the connection open
        self._ever_connected = False
        self._prefetch: asyncio.Future[PreparedBatch | None] | None = None
        self._event_bytes = 0.0  # wire bytes per event of the last batch (0: none formatted yet)
        every = server.heartbeat_seconds
        self.heartbeat = None if every is None else HeartbeatSchedule(every)
        m = ctx.metrics
        # UDP has no acknowledgement: its events are counted as sent, never as delivered
        accepted = m.events_sent if server.server_protocol == "UDP" else m.events_delivered
        self._m_delivered = accepted.labels(self.name)
        self._m_failed = m.events_failed.labels(self.name)
        self.report = WriterReport(server, m)  # oversize and fallback lines with their counters
        self._m_reconnects = m.reconnects.labels(self.name)
        self._m_heartbeats = m.heartbeats_sent.labels(self.name)
        self._m_up = m.server_up.labels(self.name)
        self._m_up.set(0)

    # --- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        ctx = self.ctx
        try:
            while not ctx.stopping:
                if self.transport is None or self.transport.is_closing():
                    if not await self._connect():
                        continue
                if self.heartbeat is not None and self.heartbeat.due(ctx.monotonic()):
                    if not await self._send_heartbeat():
                        continue
                prepared = await self._take_prefetched()
                if prepared is None:
                    batch = await ctx.queue.read_batch(self.name, await self._batch_limit(0))
                    if batch is None or not len(batch):
                        self.failures = 0  # connected and nothing to send
                        await ctx.until_stopped(ctx.queue.wait_for_data(self.name, self._idle_wait()))
                        continue
                    prepared = self.prepare(batch)
                await self._deliver(prepared)
        except BaseException:
            self.keep_open = False  # cancelled mid-write: the connection's state is unknown
            raise
        finally:
            await self._drop_prefetched()
            if not self.keep_open or self.transport is None or self.transport.is_closing():
                self.keep_open = False
                await self._close()
                self._m_up.set(0)
            self.state = STOPPED

    def take_over(self, old: ServerWriter) -> bool:
        """Adopt the open connection of `old`, the same server's writer of the pool a reload replaced
        (its settings did not change): no reconnect. False when there is none to take."""
        t = old.transport
        if not old.keep_open or t is None or t.is_closing():
            return False
        old.transport, old.keep_open = None, False
        self.transport = t
        self._tls_ctx = old._tls_ctx
        self._event_bytes = old._event_bytes
        self._ever_connected = True
        self.state = UP
        self.ctx.state_changed(self.name, UP)
        self._m_up.set(1)
        return True

    async def _connect(self) -> bool:
        ctx = self.ctx
        if self._ever_connected or self.failures:
            self._m_reconnects.inc()
        try:
            if self.server.uses_tls and self._tls_ctx is None:
                self._tls_ctx = build_tls_context(self.server, ctx.cert_dir)
            self.transport = await ctx.opener(
                self.server,
                ctx.cert_dir,
                connect_timeout=ctx.connect_timeout,
                tls_context=self._tls_ctx,
                settle_seconds=ctx.settle_seconds,
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
            ctx.state_changed(self.name, UP)
        self._ever_connected = True
        after = self.failures
        if self.server.server_protocol != "UDP":
            self.failures = 0  # a reconnect that succeeds is not a failure (UDP: see _deliver)
        if previous in (RETRYING, DOWN):
            log.info(
                "syslog_server_recovered", server=self.server.label, after_failures=after, resets=self.resets
            )
        else:
            log.info("syslog_server_connected", server=self.server.label)
        self._m_up.set(1)
        if ctx.health is not None and not self.resets:  # resetting writes: healthy once a batch is delivered
            ctx.health.server_ok(self.name)
        ctx.server_changed()
        return True

    async def _failed(self, reason: str) -> None:
        """One failed connect or write: count it, maybe declare the server down, then back off."""
        ctx = self.ctx
        self.failures += 1
        self.reason = reason
        self._m_up.set(0)
        if self.transport is not None:
            await self._close()
        first = self.state in (STARTING, UP)
        if first and ctx.health is not None:
            ctx.health.server_failed(self.name, reason)
        retry = ctx.retry.retry_count
        delay = ctx.retry.delay(self.failures)
        if ctx.retry.gives_up(self.failures) and self.state != DOWN:
            self.state = DOWN
            ctx.state_changed(self.name, DOWN, reason)
            depth = await ctx.queue.depth(self.name)
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
            if ctx.health is not None and not first:
                ctx.health.server_failed(self.name, reason)
            ctx.server_changed()
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
                ctx.state_changed(self.name, RETRYING, reason)
            self.state = RETRYING
            log.info(
                "syslog_server_retrying",
                server=self.server.label,
                attempt=self.failures,
                retry_in_seconds=round(delay, 2),
                reason=reason,
            )
        await ctx.until_stopped(ctx.sleep(delay))

    async def _write_reset(self, reason: str, events: int) -> None:
        """A batch's write failed on a connection that had opened. Not a failed reconnect (retry_count
        does not count it): back off by consecutive resets and halve the next batch (module docstring)."""
        ctx = self.ctx
        self.resets += 1
        self.reason = reason
        self._m_up.set(0)
        await self._close()
        if self.resets == 1 and ctx.health is not None:
            ctx.health.server_failed(self.name, reason)
        if self.state == UP:
            log.warning("syslog_server_lost", server=self.server.label, reason=reason)
            ctx.state_changed(self.name, RETRYING, reason)
            self.state = RETRYING
        delay = ctx.retry.delay(self.resets)
        fields = {
            "server": self.server.label,
            "reason": reason,
            "consecutive": self.resets,
            "batch_events": events,
            "next_batch_events": self._halved(ctx.batch_size),
            "retry_in_seconds": round(delay, 2),
        }
        if self.resets == RESETS_REPORTED_AFTER:
            log.error(
                "syslog_writes_reset",
                **fields,
                hint="the server accepts connections but resets them during the write: check its logs "
                "(message size limit, TLS, rate limit); events stay queued and are resent; retry_count "
                "does not count these, only failed reconnects",
            )
        else:
            log.info("syslog_write_reset", **fields)
        await ctx.until_stopped(ctx.sleep(delay))

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
        ctx = self.ctx
        drain = ctx.drain_batch_size
        if drain <= ctx.batch_size or self._event_bytes <= 0:
            return self._halved(ctx.batch_size)
        if await ctx.queue.depth(self.name) - in_flight <= drain:
            return self._halved(ctx.batch_size)
        return self._halved(max(ctx.batch_size, min(drain, int(ctx.drain_batch_bytes / self._event_bytes))))

    def _halved(self, limit: int) -> int:
        """`limit` halved once per consecutive mid-write reset, at least 1 (see the module docstring)."""
        return max(1, limit >> min(self.resets, 30))

    async def _read_prepared(self, start_seq: int, in_flight: int) -> PreparedBatch | None:
        limit = await self._batch_limit(in_flight)
        batch = await self.ctx.queue.read_batch_from(self.name, start_seq, limit)
        if batch is None or not len(batch):
            return None
        return self.prepare(batch)

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Format and frame a batch for this server (the CPU part of a delivery, done before the write)."""
        prepared = prepare_batch(batch, self.server, self.formatter, self.ctx.wall_clock(), self.oversizer)
        if prepared.events:
            self._event_bytes = sum(map(len, prepared.frames)) / prepared.events
        return prepared

    async def _deliver(self, prepared: PreparedBatch) -> None:
        """Write, then ack. While the write waits for the peer's TCP ack and the settle time, the next
        batch (after this one) is read and formatted; it is written only after this one was acked, and
        dropped if this write fails, so at most one batch is ever unacked on the wire."""
        ctx = self.ctx
        batch, frames = prepared.batch, prepared.frames
        assert self.transport is not None
        if not ctx.stopping:
            self._prefetch = asyncio.ensure_future(self._read_prepared(batch.end_seq, prepared.events))
        try:
            if frames:
                await asyncio.wait_for(self.transport.write(frames), ctx.write_timeout)
        except (SyslogError, OSError, TimeoutError) as exc:
            await self._drop_prefetched()
            reason = str(exc) or f"write timed out after {ctx.write_timeout:g} s"
            self._m_failed.inc(prepared.events)
            if self.server.server_protocol == "UDP":
                # connectionless: "connecting" a UDP socket always succeeds, so a refused send (ICMP port
                # unreachable) is the only sign of an unreachable server; it counts as a failed reconnect
                await self._failed(reason)
            else:
                await self._write_reset(reason, prepared.events)
            return
        except BaseException:
            await self._drop_prefetched()
            raise
        if not await record_delivery(self.ctx, self.name, self.server.label, prepared):
            return
        self._m_delivered.inc(prepared.sent)
        if self.heartbeat is not None:
            self.heartbeat.delivered += prepared.sent
        self.failures = 0
        if self.resets:
            log.info("syslog_writes_recovered", server=self.server.label, after_resets=self.resets)
            self.resets = 0
            self._m_up.set(1)
            if self.ctx.health is not None:
                self.ctx.health.server_ok(self.name)
        if prepared.oversize is not None:
            self.report.oversize(prepared.oversize)
        if prepared.fallbacks:
            self.report.fallbacks(prepared.fallbacks, prepared.fallback_detail)

    def _idle_wait(self) -> float:
        """Seconds to wait for events when there are none: until the next heartbeat at the latest."""
        if self.heartbeat is None:
            return IDLE_WAIT_SECONDS
        return self.heartbeat.wait(self.ctx.monotonic(), IDLE_WAIT_SECONDS)

    async def _send_heartbeat(self) -> bool:
        """Build and write one heartbeat between two batches. False after a failed write (handled like a
        failed batch write: the prefetched batch is dropped, the writer reconnects); a heartbeat that
        cannot be built is skipped until the next interval, never a reason to stop delivering events."""
        beat = self.heartbeat
        assert beat is not None and self.transport is not None
        ctx = self.ctx
        delivered = beat.delivered
        try:
            streams = ctx.server_streams.get(self.name, ())
            facts = await gather_facts(
                self.server, ctx.queue, ctx.heartbeat_source, streams, ctx.wall_clock(), delivered
            )
            frame = heartbeat_wire(self.formatter, facts)
            if frame is None:
                raise ValueError(f"it does not fit max_message_size {self.server.max_message_size}")
        except Exception as exc:  # a queue that cannot answer now, or too small a budget: skipped
            log.warning(
                "syslog_heartbeat_skipped",
                server=self.server.label,
                error=f"{type(exc).__name__}: {exc}"[:300],
                detail="the next heartbeat is tried after heartbeat_seconds; events are not affected",
            )
            beat.sent(ctx.monotonic(), 0)
            return True
        try:
            await asyncio.wait_for(self.transport.write([frame]), ctx.write_timeout)
        except (SyslogError, OSError, TimeoutError) as exc:
            await self._drop_prefetched()
            await self._failed(str(exc) or f"heartbeat write timed out after {ctx.write_timeout:g} s")
            return False
        except BaseException:
            await self._drop_prefetched()
            raise
        beat.sent(ctx.monotonic(), delivered)
        self._m_heartbeats.inc()
        log.debug(
            "syslog_heartbeat_sent",
            server=self.server.label,
            backlog=facts.backlog,
            delivered_since_last=delivered,
            max_lag_seconds=facts.max_lag_seconds,
        )
        return True

    async def close_connection(self) -> None:
        """Close the connection a stopped writer kept for a reload that did not take it over."""
        self.keep_open = False
        await self._close()

    async def _close(self) -> None:
        t, self.transport = self.transport, None
        if t is not None:
            with contextlib.suppress(Exception):
                await t.close()
