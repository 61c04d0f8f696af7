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

Modules: `process` (the `Service`: triggers, signals, reload's quiesce and apply, shutdown), `pulling`
(one pull: source to buffer), `pagestore` (`PageStore`, what a pull uses of the queue), `mempagestore`
(`MemPageStore`, that contract in memory), `reload` (what a SIGHUP would apply), `replays` (replay deliveries),
`startup` (the start summary and configuration warnings), `entry` (`run_service`, for `siemconn run`).
"""

from siemconn.service.entry import run_service
from siemconn.service.process import HEARTBEAT_EVERY, SHUTDOWN_BUDGET, SIGNAL_GRACE, Service
from siemconn.service.reload import RELOAD_WRITER_TIMEOUT, RESTART_ONLY

__all__ = [
    "HEARTBEAT_EVERY",
    "RELOAD_WRITER_TIMEOUT",
    "RESTART_ONLY",
    "SHUTDOWN_BUDGET",
    "SIGNAL_GRACE",
    "Service",
    "run_service",
]
