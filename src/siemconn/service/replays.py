"""Replays in the running service: each request `siemconn replay` queued gets a writer of its own.

Invariants: at most one task per replay id; a replay whose server is not configured, or that the queue
cannot start, is marked failed with the reason; a replay is marked done only when its feed has delivered
the whole range (`siemconn.queue.feed.ReplayFeed`), so a stopped replay resumes from its durable
position on the next heartbeat. No replay starts while the service halts (a stop or a reload).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from siemconn.config import Configuration
from siemconn.errors import QueueError
from siemconn.logging import get_logger
from siemconn.ops.metrics import NO_METRICS
from siemconn.queue import DurableQueue
from siemconn.queue.feed import ReplayFeed
from siemconn.queue.replay import ReplayRequest
from siemconn.rux.streams import TIMESTAMP_FORMAT
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.retrypolicy import RetryPolicy

__all__ = ["Replays"]

log = get_logger("siemconn.service")


class Replays:
    """The replay tasks of one service, by replay id."""

    def __init__(self, *, stop_timeout: float) -> None:
        self._stop_timeout = stop_timeout  # seconds a replay's writer gets to flush when stopped
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def start_pending(
        self, queue: DurableQueue, cfg: Configuration, cert_dir: Path, halted: Callable[[], bool]
    ) -> None:
        """Start a task for each pending replay request that has none yet."""
        for request in await queue.pending_replays():
            if halted():  # a reload or a stop began while the requests were read
                return
            if request.id in self._tasks:
                continue
            task = asyncio.get_running_loop().create_task(
                self._replay(queue, request, cfg, cert_dir), name=f"replay-{request.id}"
            )
            self._tasks[request.id] = task
            task.add_done_callback(self._ended(request.id))

    async def stop(self) -> None:
        """Cancel every replay task and wait for them (their positions are durable)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, replay_id: int) -> Callable[[asyncio.Task[None]], None]:
        def _ended(task: asyncio.Task[None]) -> None:
            if self._tasks.get(replay_id) is task:
                del self._tasks[replay_id]

        return _ended

    async def _replay(
        self, queue: DurableQueue, request: ReplayRequest, cfg: Configuration, cert_dir: Path
    ) -> None:
        """Deliver one replay with a writer of its own for that server; mark it done at the end."""
        server = next((s for s in cfg.server if s.name == request.destination), None)
        if server is None:
            detail = f"server {request.destination!r} is not in the configuration"
            await queue.finish_replay(request.id, "failed", detail)
            log.error("replay_failed", replay=request.id, server=request.destination, error=detail)
            return
        try:
            request = await queue.start_replay(request)
        except QueueError as exc:
            await queue.finish_replay(request.id, "failed", str(exc))
            log.error("replay_failed", replay=request.id, server=request.destination, error=str(exc))
            return
        feed = ReplayFeed(queue, request)
        log.info(
            "replay_started",
            replay=request.id,
            server=server.label,
            by="event time" if request.sent is None else "delivery time",
            since=time.strftime(
                TIMESTAMP_FORMAT, time.gmtime(request.sent[0] if request.sent else request.since)
            ),
            until=time.strftime(
                TIMESTAMP_FORMAT, time.gmtime(request.sent[1] if request.sent else request.until)
            ),
            stream=request.stream or "every stream it takes",
            resumed_at=request.position,
        )
        pool = WriterPool(
            [server],
            feed,
            cfg,
            cert_dir,
            metrics=NO_METRICS,
            retry_policy=RetryPolicy(cfg.retry_count, cfg.max_backoff_seconds).forever(),
        )
        pool_task = asyncio.get_running_loop().create_task(pool.run(), name=f"replay-pool-{request.id}")
        done = asyncio.ensure_future(feed.done.wait())
        try:
            await asyncio.wait({pool_task, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            with suppress(Exception):
                await pool.stop(timeout=self._stop_timeout)
            with suppress(asyncio.CancelledError, Exception):
                await pool_task
        if feed.done.is_set():
            await queue.finish_replay(request.id, "done", f"{feed.events} events sent")
            log.info("replay_done", replay=request.id, server=server.label, events=feed.events)
