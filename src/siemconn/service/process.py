"""One connector process: triggers, pull tasks, the writer pool, replays, signals, reload and shutdown.

Invariants: the queue is opened before anything else and closed last; a signal asks for a stop that
finishes within `SHUTDOWN_BUDGET` (a second signal after `SIGNAL_GRACE` exits at once, the queue's
commits being atomic); a reload applies at a quiet point where nothing is read, acked or committed, so it
neither loses nor repeats an event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any
from zoneinfo import ZoneInfo

import aiocron

from siemconn.config import STREAMS, Settings
from siemconn.errors import AllServersDownError, EndpointError, QueueError, RuxAuthError, RuxError
from siemconn.exitcodes import ExitCode
from siemconn.logging import get_logger
from siemconn.ops.endpoint import start_http_server
from siemconn.ops.gctune import PageHold
from siemconn.ops.health import Health
from siemconn.ops.heartbeat import write_heartbeat
from siemconn.ops.metrics import Metrics
from siemconn.ops.runtime import remove_record, write_record
from siemconn.ops.sdnotify import Notifier
from siemconn.ops.upkeep import MemoryUpkeep
from siemconn.queue import DurableQueue
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import StreamSpec, stream_specs
from siemconn.service import startup
from siemconn.service.pulling import Pull, StreamRunner, pull_snapshot, pull_stream
from siemconn.service.reload import (
    RELOAD_WRITER_TIMEOUT,
    kept_servers,
    log_reload_done,
    read_reload,
    tls_stamps,
)
from siemconn.service.replays import Replays
from siemconn.syslog.pool import WriterPool

__all__ = ["HEARTBEAT_EVERY", "SHUTDOWN_BUDGET", "SIGNAL_GRACE", "Service"]

log = get_logger("siemconn.service")

SHUTDOWN_BUDGET = 10.0  # seconds from the first signal to a closed process
# A second signal this soon after the first is the same request: a terminal's Ctrl-C reaches the whole
# process group, and a launcher that forwards it (make, a supervisor, `make demo`) adds its own SIGTERM
# within a millisecond. Only a second signal after this grace means "exit at once".
SIGNAL_GRACE = 1.0
HEARTBEAT_EVERY = 5.0


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
        self._runners = {name: StreamRunner(name, stream_specs(name)) for name in STREAMS}
        self._crons: list[aiocron.Cron] = []
        self._stop = asyncio.Event()
        self._stopping = False
        # held from parsing a page to committing it, shared by the streams; the collector is paused meanwhile
        self._ingest = PageHold()
        self._signals = 0
        self._first_signal_at = 0.0
        self._exit_code = ExitCode.OK
        self._reload = asyncio.Event()
        self._tls_stamps: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._connections_kept: list[str] = []
        self._quiet = False  # a reload is quiescing: ticks start no pull
        self._replays = Replays(stop_timeout=SHUTDOWN_BUDGET / 2)
        self._state_tasks: set[asyncio.Task[None]] = set()
        # the collection and the heap's trim that keep the process's memory flat over months (issue 30)
        self.upkeep = MemoryUpkeep(lambda: any(r.lock.locked() for r in self._runners.values()))

    # --- pulling ----------------------------------------------------------------------------

    @property
    def runners(self) -> Mapping[str, StreamRunner]:
        """Each stream's runner: its pull task, no-overlap lock and skipped-tick count."""
        return self._runners

    @property
    def crons(self) -> tuple[aiocron.Cron, ...]:
        """The running cron triggers, one per stream that is on."""
        return tuple(self._crons)

    def _halted(self) -> bool:
        return self._stopping or self._quiet

    def _pull_with(self) -> Pull:
        assert self.queue is not None and self.client is not None
        return Pull(self.queue, self.client, self.metrics, self.cfg.api_version, self._ingest, self._halted)

    def tick(self, stream: str) -> None:
        """A cron tick: start a pull unless the previous one of this stream still runs."""
        runner = self._runners[stream]
        if self._halted():
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
        runner.task = asyncio.get_running_loop().create_task(self.pull(runner), name=f"pull-{stream}")

    async def pull(self, runner: StreamRunner) -> None:
        """One pull of the runner's streams, as a tick starts it (failures are logged, not raised)."""
        try:
            await pull_stream(runner, self._pull_with())
        finally:
            self.upkeep.pull_ended()

    async def pull_snapshot(self, spec: StreamSpec) -> int:
        """One poll of a snapshot stream (health, lockdown); returns the events queued."""
        return await pull_snapshot(spec, self._pull_with())

    # --- lifecycle --------------------------------------------------------------------------

    def on_signal(self, signame: str) -> None:
        """SIGTERM/SIGINT: the first asks for a stop; a second after `SIGNAL_GRACE` exits at once."""
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
                    await self._replays.start_pending(
                        self.queue, self.cfg, self.settings.cert_dir, self._halted
                    )
            if self.queue is not None:
                for s in self.cfg.server:  # the one place oldest_age is set (queue_depth: the queue)
                    with suppress(Exception):
                        age = await self.queue.oldest_age(s.name)
                        if any(c.name == s.name for c in self.cfg.server):  # a reload may have removed it
                            self.metrics.oldest_age.labels(server=s.name).set(age or 0.0)
            self.upkeep.periodic()
            await asyncio.sleep(interval)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.on_signal, sig.name)
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
            self.client = self._new_client()
            try:
                if not await self._until_stop(self.client.authenticate()):
                    log.info("siemconn_stopped_before_start", exit_code=ExitCode.OK)
                    return ExitCode.OK
            except RuxAuthError as exc:
                log.error("startup_credentials_rejected", error=str(exc))
                return ExitCode.CONFIG
            except RuxError as exc:
                log.error("api_unreachable_at_startup", detail="pulls will retry on schedule", error=str(exc))
            await startup.log_started(self.queue, self.settings)
            startup.warn_off_streams(self.cfg)
            startup.warn_file_permissions(self.settings)
            if self.cfg.metrics_address:
                try:
                    http_server = await start_http_server(self.cfg.metrics_address, self.metrics, self.health)
                except EndpointError as exc:
                    log.error("metrics_endpoint_failed", error=str(exc))
                    return ExitCode.CONFIG
                startup.log_endpoint_listening(self.cfg.metrics_address)
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

    def _new_client(self, previous: RuxClient | None = None) -> RuxClient:
        """The API client of the running settings; after a reload it takes `previous`'s HTTP client over."""
        creds = self.settings.credentials
        return RuxClient(creds, self.cfg, metrics=self.metrics, on_secret=self._on_secret, previous=previous)

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

    def _start_pool(
        self, previous: WriterPool | None = None, keep: list[str] | None = None
    ) -> asyncio.Task[None]:
        """Start a writer pool; after a reload, it takes over `previous`'s connections of the `keep` servers."""
        assert self.queue is not None
        self._tls_stamps = tls_stamps(self.settings)
        self.pool = WriterPool(
            self.cfg.server,
            self.queue,
            self.cfg,
            self.settings.cert_dir,
            metrics=self.metrics,
            health=self.health,
            on_state=self._on_pool_state,
            heartbeat_source=self.queue,
        )
        self._connections_kept = self.pool.adopt(previous, keep or []) if previous is not None else []
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

    # --- reload -----------------------------------------------------------------------------

    async def _apply_reload(self, pool_task: asyncio.Task[None]) -> asyncio.Task[None]:
        """SIGHUP: validate the new config; if valid, quiesce, reconfigure, restart. Returns the pool task
        that runs afterwards (the old one when the new config is invalid)."""
        assert self.queue is not None
        new_settings = await read_reload(self.settings.config_path, self.cfg)
        if new_settings is None:
            return pool_task
        new_cfg = new_settings.configuration
        old_names = [s.name for s in self.cfg.server]
        new_names = [s.name for s in new_cfg.server]
        keep = kept_servers(self.settings, new_settings, self._tls_stamps)
        old_pool = self.pool
        # quiesce: no tick, no pull, no writer, no replay touches the queue past this point
        self._quiet = True
        self._stop_crons()
        await self._wait_pulls(None)
        await self._replays.stop()
        if self.pool is not None and not pool_task.done():
            with suppress(Exception):
                await self.pool.stop(timeout=RELOAD_WRITER_TIMEOUT, keep=keep)
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
            if old_pool is not None:
                await old_pool.close_kept()
            self._exit_code = ExitCode.UNEXPECTED
            self._quiet = False
            self._stop.set()
            return pool_task
        self.settings = new_settings
        self.cfg = new_cfg
        self.health.reconfigure(new_names, new_cfg.health_window_seconds)
        old_client = self.client
        self.client = self._new_client(old_client)
        if self._on_secret is not None:
            self._on_secret(self.settings.credentials.client_secret.get_secret_value())
        token_kept = False
        if old_client is not None:
            token_kept = self.client.adopt_token(old_client)
            with suppress(Exception):
                await old_client.aclose()
        new_pool = self._start_pool(old_pool, keep)
        if old_pool is not None:
            await old_pool.close_kept()  # kept for a server the new pool did not take: closed now
        self.metrics.forget_servers([n for n in old_names if n not in new_names])
        self._quiet = False
        self._start_crons()
        startup.warn_off_streams(self.cfg)
        log_reload_done(
            old_names,
            self.cfg,
            token_kept=token_kept,
            api_client_kept=self.client.http_kept,
            connections_kept=self._connections_kept,
        )
        return new_pool

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
        self.upkeep.stop()
        await self._wait_pulls(max(0.1, (deadline - time.monotonic()) / 2))
        await self._replays.stop()
        if self.pool is not None and not pool_task.done():
            with suppress(Exception):
                await self.pool.stop(timeout=max(0.5, deadline - time.monotonic()))
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(pool_task, timeout=max(0.1, deadline - time.monotonic()))
        log.info("siemconn_stopped", exit_code=self._exit_code)
