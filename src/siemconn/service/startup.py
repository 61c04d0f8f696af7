"""What the service logs about itself at start and reload: the summary and the configuration warnings.

Invariants: these only log; none of them fails the start (a warning names the problem and its fix).
"""

from __future__ import annotations

from siemconn import __version__
from siemconn.config import Configuration, Settings, is_loopback
from siemconn.events import encoder
from siemconn.events.transcode import TRANSCODER
from siemconn.fileperms import permission_warnings
from siemconn.logging import get_logger
from siemconn.ops.endpoint import parse_address
from siemconn.queue import DurableQueue

__all__ = [
    "log_endpoint_listening",
    "log_started",
    "server_lines",
    "warn_file_permissions",
    "warn_off_streams",
]

log = get_logger("siemconn.service")


def server_lines(cfg: Configuration) -> list[str]:
    """One line per configured server: its label, format, framing, the streams it takes and, when set, its
    in-band heartbeat interval."""
    return [
        f"{s.label} format={s.format} framing={s.framing} "
        f"streams={','.join(cfg.server_streams(s)) or '(none on)'}"
        + ("" if s.heartbeat_seconds is None else f" heartbeat={s.heartbeat_seconds}s")
        for s in cfg.server
    ]


def _versions(cfg: Configuration) -> str:
    """The API version(s) in use: v3.5 serves detections only, the other streams are pulled at v3.4."""
    if cfg.api_version != "v3.5":
        return cfg.api_version
    size = f" size={cfg.detection_size}" if cfg.detection_size else ""
    return f"v3.5: detections at v3.5{size}, other streams at v3.4"


async def log_started(queue: DurableQueue, settings: Settings) -> None:
    """`siemconn_started`: version, API, schedules, servers, checkpoints, queue depths and the event
    encoder in use (the C one is optional in the build: an operator sees here whether it is there)."""
    cfg = settings.configuration
    checkpoints = await queue.checkpoints()
    depths = {s.name: await queue.depth(s.name) for s in cfg.server}
    scheduler = cfg.scheduler
    log.info(
        "siemconn_started",
        version=__version__,
        api=f"{settings.credentials.base_url} ({_versions(cfg)})",
        schedules={s: scheduler.schedule(s) for s in scheduler.enabled},
        streams_off=list(scheduler.disabled),
        timezone=cfg.timezone,
        servers=server_lines(cfg),
        checkpoints=checkpoints,
        queue_depths=depths,
        retry_count=cfg.retry_count,
        encoder=encoder.ENCODER + (" + page transcoder" if TRANSCODER else ""),
    )


def warn_off_streams(cfg: Configuration) -> None:
    """A server that lists a stream that is off gets only that stream's events already queued."""
    on = set(cfg.scheduler.enabled)
    for s in cfg.server:
        off = [x for x in s.streams or () if x not in on]
        if off:
            log.warning(
                "server_stream_off",
                server=s.name,
                streams=off,
                detail="these streams are off in scheduler: the server receives only their events "
                "already queued; turn them on, or remove them from the server's streams",
            )


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


def log_endpoint_listening(address: str) -> None:
    """`metrics_endpoint_listening`, and a warning when the unauthenticated endpoint is not on loopback."""
    log.info("metrics_endpoint_listening", address=address)
    if not is_loopback(parse_address(address)[0]):
        log.warning(
            "metrics_endpoint_not_loopback",
            address=address,
            hint="the endpoint has no authentication; bind it to 127.0.0.1 unless a firewall "
            "or the container network limits who can reach it",
        )
