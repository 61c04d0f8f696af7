"""The running service: wires the RUX source, the durable queue and the syslog sink on one event loop.

    aiocron tick -> pull(stream) -> RuxClient.pages() -> DurableQueue.commit_page()   (source -> buffer)
    WriterPool: one writer per server, DurableQueue.read_batch() -> socket -> ack()    (buffer -> sink)

Nothing here decides what is delivered; the queue is the only place where progress is recorded.

Reload (SIGHUP): the new config.json and environment are validated first; an invalid one is logged with
every problem and the running configuration stays. A valid one is applied at a quiet point: triggers
stopped, in-flight pulls finished (their pages committed), writers stopped gracefully (each in-flight batch
flushed and acked), then the queue is reconfigured in place (same file, same lock: added servers start
from now or the retained pages, removed ones are dropped) and the pool and triggers start again. Since
nothing is read, acked or committed in between, a reload neither loses nor repeats an event. Options that
cannot change in a running process (data_dir, log_dir, log_format, log_level, metrics_address) are logged
as `reload_needs_restart` and keep their running value.

Replays: on each heartbeat the service starts the replay requests `siemconn replay` queued, each with a
writer of its own for that one server (siemconn.queue.replay).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiocron

from siemconn import __version__
from siemconn.cli import ExitCode
from siemconn.config import STREAMS, Configuration, Settings, is_loopback, load_settings
from siemconn.errors import (
    AllServersDownError,
    ConfigError,
    EndpointError,
    QueueError,
    RuxAuthError,
    RuxError,
    RuxPermissionError,
    RuxResponseError,
)
from siemconn.fileperms import permission_warnings
from siemconn.logging import get_logger, setup_logging
from siemconn.ops.endpoint import parse_address, start_http_server
from siemconn.ops.gctune import PageHold
from siemconn.ops.health import Health
from siemconn.ops.heartbeat import write_heartbeat
from siemconn.ops.malloc import tune_process
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.ops.runtime import remove_record, write_record
from siemconn.ops.sdnotify import Notifier
from siemconn.queue import DurableQueue
from siemconn.queue.replay import ReplayFeed, ReplayRequest
from siemconn.rux import lockdown
from siemconn.rux.client import RuxClient
from siemconn.rux.health import health_event
from siemconn.rux.streams import TIMESTAMP_FORMAT, StreamSpec, api_path, stream_specs
from siemconn.syslog.pool import WriterPool

__all__ = ["HEARTBEAT_EVERY", "SHUTDOWN_BUDGET", "Service", "run_service"]

log = get_logger("siemconn.service")

SHUTDOWN_BUDGET = 10.0  # seconds from the first signal to a closed process
# A second signal this soon after the first is the same request: a terminal's Ctrl-C reaches the whole
# process group, and a launcher that forwards it (make, a supervisor, `make demo`) adds its own SIGTERM
# within a millisecond. Only a second signal after this grace means "exit at once".
SIGNAL_GRACE = 1.0
HEARTBEAT_EVERY = 5.0
RELOAD_WRITER_TIMEOUT = 30.0  # seconds the writers get to finish their in-flight batch at a reload
# options a running process cannot change: a reload logs them and keeps the running value
RESTART_ONLY = ("data_dir", "log_dir", "log_format", "log_level", "metrics_address")


@dataclass
class _StreamRunner:
    """One stream's pull task and its no-overlap lock."""

    stream: str
    specs: list[StreamSpec]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    skipped: int = 0


class Service:
    """One connector process: triggers, pull tasks, the writer pool, signals and shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_secret = on_secret
        self.cfg = settings.configuration
        self.metrics = Metrics(enabled=bool(self.cfg.metrics_address))
        self.health = Health([s.name for s in self.cfg.server], window=self.cfg.health_window_seconds)
        self.notifier = Notifier()
        self.queue: DurableQueue | None = None
        self.client: RuxClient | None = None
        self.pool: WriterPool | None = None
        self._runners = {name: _StreamRunner(name, stream_specs(name)) for name in STREAMS}
        self._crons: list[aiocron.Cron] = []
        self._stop = asyncio.Event()
        self._stopping = False
        # held from parsing a page to committing it, shared by the streams; the collector is paused meanwhile
        self._ingest = PageHold()
        self._signals = 0
        self._first_signal_at = 0.0
        self._exit_code = ExitCode.OK
        self._reload = asyncio.Event()
        self._quiet = False  # a reload is quiescing: ticks start no pull
        self._replays: dict[int, asyncio.Task[None]] = {}
        self._state_tasks: set[asyncio.Task[None]] = set()

    # --- pulling ----------------------------------------------------------------------------

    def tick(self, stream: str) -> None:
        """A cron tick: start a pull unless the previous one of this stream still runs."""
        runner = self._runners[stream]
        if self._stopping or self._quiet:
            return
        if runner.lock.locked():
            runner.skipped += 1
            log.warning(
                "pull_skipped",
                detail="previous pull still running",
                stream=stream,
                skipped_total=runner.skipped,
            )
            return
        runner.task = asyncio.get_running_loop().create_task(self._pull(runner), name=f"pull-{stream}")

    async def _pull(self, runner: _StreamRunner) -> None:
        assert self.queue is not None and self.client is not None
        async with runner.lock:
            for spec in runner.specs:
                if self._stopping or self._quiet:
                    return
                ok, reason = await self.queue.can_pull()
                if not ok:
                    log.debug("pull_paused", stream=spec.key, reason=reason)
                    return
                try:
                    fetched = await (self._pull_snapshot(spec) if spec.is_snapshot else self._pull_spec(spec))
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
                except QueueError as exc:
                    log.error("pull_stopped_queue_error", stream=spec.key, error=str(exc))
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep the process alive; the checkpoint did not move
                    log.exception("pull_failed_unexpectedly", stream=spec.key, error=repr(exc))
                    return
                log.debug("pull_done", stream=spec.key, events=fetched)

    async def _pull_spec(self, spec: StreamSpec) -> int:
        assert self.queue is not None and self.client is not None
        checkpoint = await self.queue.checkpoint(spec.key)
        total = 0
        # one parsed page alive at a time across streams (peak memory); requests still overlap
        async with aclosing(self.client.pages(spec, checkpoint, hold=self._ingest)) as pages:
            async for page in pages:
                stored = await self.queue.commit_page(
                    spec.key, page.events, page.next_checkpoint, page.rejects
                )
                total += stored
                del page  # stored: do not keep the parsed events alive while the next page is fetched
                if self._stopping or self._quiet:  # a stop or a reload: the rest waits for the next tick
                    break
                ok, _reason = await self.queue.can_pull()
                if not ok:
                    break
        now = time.time()
        await self.queue.record_poll(spec.key, now)
        self.metrics.last_poll.labels(stream=spec.key).set(now)
        if total:
            log.info("events_queued", stream=spec.key, events=total)
        return total

    async def _pull_snapshot(self, spec: StreamSpec) -> int:
        """health: the answer as one event; lockdown: the changes since the last-seen list, committed
        together with the new list (one transaction). These streams have no API cursor: their checkpoint
        counts the polls that queued events."""
        assert self.queue is not None and self.client is not None
        body = await self.client.snapshot(spec)
        path = api_path(spec, self.cfg.api_version)
        next_checkpoint = (await self.queue.checkpoint(spec.key) or 0) + 1
        stored = 0
        if spec.stream == "health":
            stored = await self.queue.commit_page(
                spec.key, [health_event(body, path)], next_checkpoint, dedupe=False
            )
        else:
            if not isinstance(body, list):
                raise RuxResponseError(
                    f"bad response from {path} for stream lockdown: expected a JSON array, got a JSON "
                    f"{type(body).__name__}; the last-seen list is kept, the next poll tries again"
                )
            seen = lockdown.load_state(await self.queue.stream_state(spec.key))
            observed_at = time.strftime(TIMESTAMP_FORMAT, time.gmtime())
            change = lockdown.diff(seen, body, observed_at)
            if change.events:
                stored = await self.queue.commit_page(
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
        now = time.time()
        await self.queue.record_poll(spec.key, now)
        self.metrics.last_poll.labels(stream=spec.key).set(now)
        if stored:
            log.info("events_queued", stream=spec.key, events=stored)
        return stored

    # --- lifecycle --------------------------------------------------------------------------

    def _on_signal(self, signame: str) -> None:
        now = time.monotonic()
        self._signals += 1
        if self._signals == 1:
            self._first_signal_at = now
            log.info("shutdown_requested", signal=signame)
            self._stop.set()
        elif now - self._first_signal_at < SIGNAL_GRACE:
            log.info(
                "signal_repeated",
                detail="shutdown already requested; taken as the same request",
                signal=signame,
            )
        else:
            log.warning(
                "second_signal_exit", detail="exiting at once; queued events stay on disk", signal=signame
            )
            os._exit(ExitCode.UNEXPECTED)

    def _on_hup(self) -> None:
        log.info("reload_requested", signal="SIGHUP", config=str(self.settings.config_path.absolute()))
        self._reload.set()

    def _on_pool_state(self, name: str, state: str, reason: str) -> None:
        """A writer's state changed: record it in the queue (for `status`), in order, off the hot path."""
        if self.queue is None:
            return
        task = asyncio.get_running_loop().create_task(self._record_state(name, state, reason))
        self._state_tasks.add(task)
        task.add_done_callback(self._state_tasks.discard)

    async def _record_state(self, name: str, state: str, reason: str) -> None:
        assert self.queue is not None
        try:
            await self.queue.record_destination_state(name, state, reason)
        except QueueError as exc:
            log.warning("destination_state_not_recorded", server=name, state=state, error=str(exc))

    async def _heartbeat(self) -> None:
        interval = min(HEARTBEAT_EVERY, (self.notifier.watchdog_interval() or HEARTBEAT_EVERY * 2) / 2)
        while True:
            self.health.loop_alive()
            self.notifier.watchdog()
            with suppress(OSError):
                write_heartbeat(self.settings.data_dir, self.health)
            if self.queue is not None and not self._quiet and not self._stopping:
                with suppress(QueueError):
                    await self._start_replays()
            if self.queue is not None:
                for s in self.cfg.server:  # the one place oldest_age is set (queue_depth: the queue)
                    with suppress(Exception):
                        age = await self.queue.oldest_age(s.name)
                        self.metrics.oldest_age.labels(server=s.name).set(age or 0.0)
            await asyncio.sleep(interval)

    async def _startup_summary(self) -> None:
        assert self.queue is not None
        checkpoints = await self.queue.checkpoints()
        depths = {s.name: await self.queue.depth(s.name) for s in self.cfg.server}
        scheduler = self.cfg.scheduler
        log.info(
            "siemconn_started",
            version=__version__,
            api=f"{self.settings.credentials.base_url} ({self.cfg.api_version})",
            schedules={s: scheduler.schedule(s) for s in scheduler.enabled},
            streams_off=list(scheduler.disabled),
            timezone=self.cfg.timezone,
            servers=[
                f"{s.label} format={s.format} framing={s.framing} "
                f"streams={','.join(self.cfg.server_streams(s)) or '(none on)'}"
                for s in self.cfg.server
            ],
            checkpoints=checkpoints,
            queue_depths=depths,
            retry_count=self.cfg.retry_count,
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig.name)
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        try:
            self.queue = await DurableQueue.open(
                self.settings.data_dir,
                [s.name for s in self.cfg.server],
                max_events=self.cfg.queue_max_events,
                min_free_disk_mb=self.cfg.min_free_disk_mb,
                metrics=self.metrics,
                routes={s.name: s.streams for s in self.cfg.server if s.streams is not None},
                retain_seconds=self.cfg.retain_hours * 3600.0,
                start_retained=[s.name for s in self.cfg.server if s.start_at == "retained"],
            )
        except QueueError as exc:
            log.error("queue_open_failed", error=str(exc))
            return ExitCode.UNEXPECTED
        record = write_record(self.settings.config_path, self.settings.data_dir)
        if record is None:
            log.debug("runtime_record_not_written", detail="no writable runtime directory")
        http_server: Any = None
        background: list[asyncio.Task[Any]] = []
        try:
            self.client = RuxClient(
                self.settings.credentials, self.cfg, metrics=self.metrics, on_secret=self._on_secret
            )
            try:
                if not await self._until_stop(self.client.authenticate()):
                    log.info("siemconn_stopped_before_start", exit_code=ExitCode.OK)
                    return ExitCode.OK
            except RuxAuthError as exc:
                log.error("startup_credentials_rejected", error=str(exc))
                return ExitCode.CONFIG
            except RuxError as exc:
                log.error("api_unreachable_at_startup", detail="pulls will retry on schedule", error=str(exc))
            await self._startup_summary()
            self._warn_off_streams()
            warn_file_permissions(self.settings)
            if self.cfg.metrics_address:
                try:
                    http_server = await start_http_server(self.cfg.metrics_address, self.metrics, self.health)
                except EndpointError as exc:
                    log.error("metrics_endpoint_failed", error=str(exc))
                    return ExitCode.CONFIG
                log.info("metrics_endpoint_listening", address=self.cfg.metrics_address)
                if not is_loopback(parse_address(self.cfg.metrics_address)[0]):
                    log.warning(
                        "metrics_endpoint_not_loopback",
                        address=self.cfg.metrics_address,
                        hint="the endpoint has no authentication; bind it to 127.0.0.1 unless a firewall "
                        "or the container network limits who can reach it",
                    )
            pool_task = self._start_pool()
            background.append(loop.create_task(self._heartbeat(), name="heartbeat"))
            self._start_crons()
            self.notifier.ready()
            while True:
                stop_task = loop.create_task(self._stop.wait(), name="stop-wait")
                reload_task = loop.create_task(self._reload.wait(), name="reload-wait")
                done, _ = await asyncio.wait(
                    {pool_task, stop_task, reload_task}, return_when=asyncio.FIRST_COMPLETED
                )
                for t in (stop_task, reload_task):
                    if not t.done():
                        t.cancel()
                if pool_task in done or stop_task in done:
                    break
                self._reload.clear()
                pool_task = await self._apply_reload(pool_task)
            if pool_task.done() and not pool_task.cancelled():
                failure = pool_task.exception()
                if isinstance(failure, AllServersDownError):
                    log.error(
                        "all_syslog_servers_down",
                        detail="exiting so the restart policy takes over",
                        error=str(failure),
                        exit_code=ExitCode.ALL_SERVERS_DOWN,
                    )
                    self._exit_code = ExitCode.ALL_SERVERS_DOWN
                elif failure is not None:
                    log.error("writer_pool_failed", error=repr(failure))
                    self._exit_code = ExitCode.UNEXPECTED
            await self._shutdown(pool_task)
            return self._exit_code
        finally:
            for t in background:
                t.cancel()
            if http_server is not None:
                http_server.close()
            remove_record(record)
            if self.client is not None:
                with suppress(Exception):
                    await self.client.aclose()
            with suppress(Exception):
                await self.queue.close()

    def _warn_off_streams(self) -> None:
        """A server that lists a stream that is off gets only that stream's events already queued."""
        on = set(self.cfg.scheduler.enabled)
        for s in self.cfg.server:
            off = [x for x in s.streams or () if x not in on]
            if off:
                log.warning(
                    "server_stream_off",
                    server=s.name,
                    streams=off,
                    detail="these streams are off in scheduler: the server receives only their events "
                    "already queued; turn them on, or remove them from the server's streams",
                )

    async def _until_stop(self, work: Awaitable[Any]) -> bool:
        """Run startup work unless a stop signal comes first; False (work cancelled) if it does."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
            return False
        task.result()  # re-raise what the work raised
        return True

    def _start_pool(self) -> asyncio.Task[None]:
        assert self.queue is not None
        self.pool = WriterPool(
            self.cfg.server,
            self.queue,
            self.cfg,
            self.settings.cert_dir,
            metrics=self.metrics,
            health=self.health,
            on_state=self._on_pool_state,
        )
        return asyncio.get_running_loop().create_task(self.pool.run(), name="writer-pool")

    def _start_crons(self) -> None:
        tz = ZoneInfo(self.cfg.timezone)
        for stream in self.cfg.scheduler.enabled:
            spec = self.cfg.scheduler.schedule(stream)
            assert spec is not None
            self._crons.append(aiocron.crontab(spec, func=self._make_tick(stream), start=True, tz=tz))
        if self.cfg.pull_at_startup:
            for stream in self.cfg.scheduler.enabled:
                self.tick(stream)

    def _stop_crons(self) -> None:
        for cron in self._crons:
            cron.stop()
        self._crons = []

    async def _wait_pulls(self, timeout: float | None) -> None:
        pulls = [r.task for r in self._runners.values() if r.task is not None and not r.task.done()]
        if not pulls:
            return
        _done, pending = await asyncio.wait(pulls, timeout=timeout)
        for t in pending:  # a commit in the worker thread still completes: SQLite makes it atomic
            t.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*pending, return_exceptions=True)

    async def _stop_replays(self) -> None:
        tasks = list(self._replays.values())
        self._replays.clear()
        for t in tasks:
            t.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- reload -----------------------------------------------------------------------------

    def _restart_only(self, new: Configuration) -> dict[str, dict[str, Any]]:
        old = self.cfg
        return {
            k: {"running": getattr(old, k), "in_file": getattr(new, k)}
            for k in RESTART_ONLY
            if getattr(old, k) != getattr(new, k)
        }

    async def _apply_reload(self, pool_task: asyncio.Task[None]) -> asyncio.Task[None]:
        """SIGHUP: validate the new config; if valid, quiesce, reconfigure, restart. Returns the pool task
        that runs afterwards (the old one when the new config is invalid)."""
        assert self.queue is not None
        path = self.settings.config_path
        try:
            new_settings = await asyncio.to_thread(load_settings, path)
        except ConfigError as exc:
            log.error(
                "reload_failed",
                config=str(path.absolute()),
                errors=list(exc.problems),
                detail="the new configuration is invalid; the running configuration is kept",
            )
            return pool_task
        new_cfg = new_settings.configuration
        keep = self._restart_only(new_cfg)
        if keep:
            log.warning(
                "reload_needs_restart",
                options=keep,
                detail="these options cannot change in a running process; they keep their running value "
                "until a restart",
            )
            new_cfg = new_cfg.model_copy(update={k: getattr(self.cfg, k) for k in keep})
        old_cfg = self.cfg
        old_names = [s.name for s in old_cfg.server]
        new_names = [s.name for s in new_cfg.server]
        # quiesce: no tick, no pull, no writer, no replay touches the queue past this point
        self._quiet = True
        self._stop_crons()
        await self._wait_pulls(None)
        await self._stop_replays()
        if self.pool is not None and not pool_task.done():
            with suppress(Exception):
                await self.pool.stop(timeout=RELOAD_WRITER_TIMEOUT)
        with suppress(asyncio.CancelledError, Exception):
            await pool_task
        await asyncio.gather(*list(self._state_tasks), return_exceptions=True)
        try:
            await self.queue.reconfigure(
                new_names,
                routes={s.name: s.streams for s in new_cfg.server if s.streams is not None},
                max_events=new_cfg.queue_max_events,
                min_free_disk_mb=new_cfg.min_free_disk_mb,
                retain_seconds=new_cfg.retain_hours * 3600.0,
                start_retained=[s.name for s in new_cfg.server if s.start_at == "retained"],
            )
        except QueueError as exc:  # the file is unusable: stop as a failed open would
            log.error("reload_queue_failed", error=str(exc))
            self._exit_code = ExitCode.UNEXPECTED
            self._quiet = False
            self._stop.set()
            return pool_task
        self.settings = new_settings.model_copy(update={"configuration": new_cfg})
        self.cfg = new_cfg
        self.health.reconfigure(new_names, new_cfg.health_window_seconds)
        old_client = self.client
        self.client = RuxClient(
            self.settings.credentials, self.cfg, metrics=self.metrics, on_secret=self._on_secret
        )
        if self._on_secret is not None:
            self._on_secret(self.settings.credentials.client_secret.get_secret_value())
        if old_client is not None:
            with suppress(Exception):
                await old_client.aclose()
        new_pool = self._start_pool()
        self._quiet = False
        self._start_crons()
        self._warn_off_streams()
        log.info(
            "reload_done",
            servers_added=[n for n in new_names if n not in old_names],
            servers_removed=[n for n in old_names if n not in new_names],
            servers=[
                f"{s.label} format={s.format} framing={s.framing} "
                f"streams={','.join(self.cfg.server_streams(s)) or '(none on)'}"
                for s in self.cfg.server
            ],
            schedules={st: self.cfg.scheduler.schedule(st) for st in self.cfg.scheduler.enabled},
            streams_off=list(self.cfg.scheduler.disabled),
            retain_hours=self.cfg.retain_hours,
        )
        return new_pool

    # --- replays ----------------------------------------------------------------------------

    async def _start_replays(self) -> None:
        assert self.queue is not None
        for request in await self.queue.pending_replays():
            if self._quiet or self._stopping:  # a reload or a stop began while the requests were read
                return
            if request.id in self._replays:
                continue
            task = asyncio.get_running_loop().create_task(self._replay(request), name=f"replay-{request.id}")
            self._replays[request.id] = task
            task.add_done_callback(self._replay_ended(request.id))

    def _replay_ended(self, replay_id: int) -> Callable[[asyncio.Task[None]], None]:
        def _ended(task: asyncio.Task[None]) -> None:
            if self._replays.get(replay_id) is task:
                del self._replays[replay_id]

        return _ended

    async def _replay(self, request: ReplayRequest) -> None:
        """Deliver one replay with a writer of its own for that server; mark it done at the end."""
        assert self.queue is not None
        server = next((s for s in self.cfg.server if s.name == request.destination), None)
        if server is None:
            detail = f"server {request.destination!r} is not in the configuration"
            await self.queue.finish_replay(request.id, "failed", detail)
            log.error("replay_failed", replay=request.id, server=request.destination, error=detail)
            return
        try:
            request = await self.queue.start_replay(request)
        except QueueError as exc:
            await self.queue.finish_replay(request.id, "failed", str(exc))
            log.error("replay_failed", replay=request.id, server=request.destination, error=str(exc))
            return
        feed = ReplayFeed(self.queue, request)
        log.info(
            "replay_started",
            replay=request.id,
            server=server.label,
            since=time.strftime(TIMESTAMP_FORMAT, time.gmtime(request.since)),
            until=time.strftime(TIMESTAMP_FORMAT, time.gmtime(request.until)),
            stream=request.stream or "every stream it takes",
            resumed_at=request.position,
        )
        pool = WriterPool(
            [server],
            feed,
            self.cfg.model_copy(update={"retry_count": -1}),
            self.settings.cert_dir,
            metrics=NO_METRICS,
        )
        pool_task = asyncio.get_running_loop().create_task(pool.run(), name=f"replay-pool-{request.id}")
        done = asyncio.ensure_future(feed.done.wait())
        try:
            await asyncio.wait({pool_task, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            with suppress(Exception):
                await pool.stop(timeout=SHUTDOWN_BUDGET / 2)
            with suppress(asyncio.CancelledError, Exception):
                await pool_task
        if feed.done.is_set():
            await self.queue.finish_replay(request.id, "done", f"{feed.events} events sent")
            log.info("replay_done", replay=request.id, server=server.label, events=feed.events)

    def _make_tick(self, stream: str) -> Callable[[], None]:
        def _tick() -> None:
            self.tick(stream)

        return _tick

    async def _shutdown(self, pool_task: asyncio.Task[None]) -> None:
        """Stop triggers, let in-flight page commits finish, flush writers; all within SHUTDOWN_BUDGET."""
        self._stopping = True
        self.notifier.stopping()
        deadline = time.monotonic() + SHUTDOWN_BUDGET - 1.0
        for cron in self._crons:
            cron.stop()
        await self._wait_pulls(max(0.1, (deadline - time.monotonic()) / 2))
        await self._stop_replays()
        if self.pool is not None and not pool_task.done():
            with suppress(Exception):
                await self.pool.stop(timeout=max(0.5, deadline - time.monotonic()))
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(pool_task, timeout=max(0.1, deadline - time.monotonic()))
        log.info("siemconn_stopped", exit_code=self._exit_code)


def warn_file_permissions(settings: Settings) -> None:
    """Log `insecure_file_permissions` for each file others could read or change (never fatal)."""
    for w in permission_warnings(settings):
        log.warning(
            "insecure_file_permissions",
            file=str(w.path),
            what=w.what,
            mode=f"{w.mode:04o}",
            problem=w.problem,
            fix=w.fix,
        )


def run_service(settings: Settings) -> int:
    """`siemconn run`: set up logging, run the service, return the process exit code."""
    cfg = settings.configuration
    redactor = setup_logging(
        log_dir=settings.log_dir,
        fmt=cfg.log_format,
        level=cfg.log_level,
        secrets=[settings.credentials.client_secret.get_secret_value()],
    )
    log.debug("process_tuned", malloc=tune_process())
    try:
        return asyncio.run(Service(settings, on_secret=redactor.add).run())
    except KeyboardInterrupt:
        return ExitCode.OK
    except Exception as exc:  # pragma: no cover - last resort, logged for the operator
        log.exception("siemconn_crashed", error=repr(exc))
        return ExitCode.UNEXPECTED
