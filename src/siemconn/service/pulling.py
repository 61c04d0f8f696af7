"""Source to buffer: one pull of a stream, from the RUX client's pages to `PageStore.commit_page` (the
source side's contract with the queue, `siemconn.service.pagestore`, which `DurableQueue` implements and
`MemPageStore` implements in memory).

Invariants: a page is committed (events and checkpoint in one transaction) before the next page is
requested, and at most one parsed page is alive across all streams (`Pull.ingest`); a pull stops between
pages when the service halts (a stop or a reload) or the queue pauses fetching, so the rest waits for the
next tick from the stored checkpoint. A failed pull never moves a checkpoint and never ends the process;
a stream's runner lock keeps its pulls from overlapping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from siemconn.config import OBJECT_SNAPSHOT
from siemconn.errors import (
    QueueDiskFullError,
    QueueError,
    QueueNoRoomError,
    RuxAuthError,
    RuxError,
    RuxPermissionError,
    RuxResponseError,
)
from siemconn.logging import get_logger
from siemconn.ops.metrics import Metrics
from siemconn.rux import lockdown
from siemconn.rux.client import RuxClient
from siemconn.rux.healthevent import health_event
from siemconn.rux.streams import TIMESTAMP_FORMAT, StreamSpec, api_path
from siemconn.service.pagestore import PageStore

__all__ = ["PageStore", "Pull", "StreamRunner", "pull_events", "pull_snapshot", "pull_stream"]

log = get_logger("siemconn.service")


@dataclass
class StreamRunner:
    """One stream's pull task and its no-overlap lock."""

    stream: str
    specs: list[StreamSpec]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    skipped: int = 0


@dataclass(frozen=True)
class Pull:
    """What one pull works with: the buffer, the source, and when to stop early."""

    queue: PageStore
    client: RuxClient
    metrics: Metrics
    api_version: str
    ingest: asyncio.Lock  # held from parsing a page to committing it, shared by the streams
    halted: Callable[[], bool]  # a stop or a reload began: start nothing new


async def pull_stream(runner: StreamRunner, pull: Pull) -> None:
    """Pull each of the runner's specs in turn under its lock; log each failure, never raise it."""
    async with runner.lock:
        for spec in runner.specs:
            if pull.halted():
                return
            ok, reason = await pull.queue.can_pull()
            if not ok:
                log.debug("pull_paused", stream=spec.key, reason=reason)
                return
            try:
                fetched = await (pull_snapshot(spec, pull) if spec.is_snapshot else pull_events(spec, pull))
            except RuxAuthError as exc:
                log.error("pull_failed_credentials_rejected", stream=spec.key, error=str(exc))
                return
            except RuxPermissionError as exc:
                log.error("pull_failed_permission_denied", stream=spec.key, error=str(exc))
                continue
            except RuxError as exc:
                log.error(
                    "pull_failed",
                    detail="the next tick retries from the same checkpoint",
                    stream=spec.key,
                    error=str(exc),
                )
                return
            except (QueueNoRoomError, QueueDiskFullError) as exc:
                # the queue logged the pause or the disk-full condition once; this tick ends quietly and
                # the checkpoint did not move (the page is fetched again when there is room)
                log.debug("pull_paused_no_room", stream=spec.key, error=str(exc))
                return
            except QueueError as exc:
                log.error("pull_stopped_queue_error", stream=spec.key, error=str(exc))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the process alive; the checkpoint did not move
                log.exception("pull_failed_unexpectedly", stream=spec.key, error=repr(exc))
                return
            log.debug("pull_done", stream=spec.key, events=fetched)


async def _polled(spec: StreamSpec, pull: Pull, stored: int) -> int:
    """Record a finished poll (for `status` and `last_poll`) and log what it queued; returns `stored`."""
    now = time.time()
    await pull.queue.record_poll(spec.key, now)
    pull.metrics.last_poll.labels(stream=spec.key).set(now)
    if stored:
        log.info("events_queued", stream=spec.key, events=stored)
    return stored


async def pull_events(spec: StreamSpec, pull: Pull) -> int:
    """An event stream: commit each page after the stored checkpoint; returns the events stored."""
    checkpoint = await pull.queue.checkpoint(spec.key)
    total = 0
    # one parsed page alive at a time across streams (peak memory); requests still overlap
    async with aclosing(pull.client.pages(spec, checkpoint, hold=pull.ingest)) as pages:
        async for page in pages:
            stored = await pull.queue.commit_page(spec.key, page.events, page.next_checkpoint, page.rejects)
            total += stored
            del page  # stored: do not keep the parsed events alive while the next page is fetched
            if pull.halted():  # a stop or a reload: the rest waits for the next tick
                break
            ok, _reason = await pull.queue.can_pull()
            if not ok:
                break
    return await _polled(spec, pull, total)


async def pull_snapshot(spec: StreamSpec, pull: Pull) -> int:
    """health: the answer as one event; lockdown: the changes since the last-seen list, committed
    together with the new list (one transaction). These streams have no API cursor: their checkpoint
    counts the polls that queued events."""
    body = await pull.client.snapshot(spec)
    path = api_path(spec, pull.api_version)
    next_checkpoint = (await pull.queue.checkpoint(spec.key) or 0) + 1
    stored = 0
    if spec.snapshot == OBJECT_SNAPSHOT:
        stored = await pull.queue.commit_page(
            spec.key, [health_event(body, path)], next_checkpoint, dedupe=False
        )
    else:
        if not isinstance(body, list):
            raise RuxResponseError(
                f"bad response from {path} for stream lockdown: expected a JSON array, got a JSON "
                f"{type(body).__name__}; the last-seen list is kept, the next poll tries again"
            )
        seen = lockdown.load_state(await pull.queue.stream_state(spec.key))
        observed_at = time.strftime(TIMESTAMP_FORMAT, time.gmtime())
        change = lockdown.diff(seen, body, observed_at)
        if change.events:
            stored = await pull.queue.commit_page(
                spec.key,
                change.events,
                next_checkpoint,
                state=lockdown.dump_state(change.new_state),
                dedupe=False,
            )
            log.info(
                "lockdown_changes_queued",
                locked=change.locked,
                changed=change.changed,
                unlocked=change.unlocked,
                in_lockdown=len(change.new_state),
            )
    return await _polled(spec, pull, stored)
