"""SIGHUP: read and check the new configuration before the running service quiesces for it.

Invariants: an invalid config.json or environment is logged (`reload_failed`, every problem) and changes
nothing; the options a running process cannot change (`RESTART_ONLY`) are logged as
`reload_needs_restart` and keep their running value in what is applied. The quiesce and apply steps are
`siemconn.service.process.Service`'s: this module decides only what a reload would apply.

What a reload keeps (a burst of SIGHUPs must not hammer the token endpoint, which rate-limits, or the
receivers): the access token, unless BASE_URL or the credentials changed (`RuxClient.adopt_token`); the
API's HTTP client with its TLS context and open connection, unless `http_timeout` changed (`RuxClient`'s
`previous`: building a new one per reload held ~0.8 MB each until the collector's next full pass); and
the open connection of every server whose settings did not change (`kept_servers`: the same server
object, the same cert_dir, and for TLS the same CA, client certificate and key files, by size and
modification time, so a renewed certificate is picked up by a reload).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from siemconn.config import Configuration, ServerConfig, Settings, load_settings
from siemconn.errors import ConfigError
from siemconn.logging import get_logger
from siemconn.service.startup import server_lines

__all__ = [
    "RELOAD_WRITER_TIMEOUT",
    "RESTART_ONLY",
    "kept_servers",
    "log_reload_done",
    "read_reload",
    "restart_only",
    "tls_stamps",
]

log = get_logger("siemconn.service")

RELOAD_WRITER_TIMEOUT = 30.0  # seconds the writers get to finish their in-flight batch at a reload
# options a running process cannot change: a reload logs them and keeps the running value
RESTART_ONLY = ("data_dir", "log_dir", "log_format", "log_level", "metrics_address")


def restart_only(old: Configuration, new: Configuration) -> dict[str, dict[str, Any]]:
    """The `RESTART_ONLY` options that differ, with their running and their new value."""
    return {
        k: {"running": getattr(old, k), "in_file": getattr(new, k)}
        for k in RESTART_ONLY
        if getattr(old, k) != getattr(new, k)
    }


async def read_reload(path: Path, running: Configuration) -> Settings | None:
    """The settings a reload applies: config.json at `path` and the environment, with the restart-only
    options kept at their running value; None (logged) when they are invalid."""
    try:
        new_settings = await asyncio.to_thread(load_settings, path)
    except ConfigError as exc:
        log.error(
            "reload_failed",
            config=str(path.absolute()),
            errors=list(exc.problems),
            detail="the new configuration is invalid; the running configuration is kept",
        )
        return None
    new_cfg = new_settings.configuration
    keep = restart_only(running, new_cfg)
    if keep:
        log.warning(
            "reload_needs_restart",
            options=keep,
            detail="these options cannot change in a running process; they keep their running value "
            "until a restart",
        )
        new_cfg = new_cfg.model_copy(update={k: getattr(running, k) for k in keep})
    return new_settings.model_copy(update={"configuration": new_cfg})


FileStamp = tuple[tuple[str, int, int], ...]


def _stamp(server: ServerConfig, cert_dir: Path) -> FileStamp:
    """(path, size, mtime) of each TLS file of `server` (empty for plain servers; -1 for a missing file)."""
    if not server.uses_tls:
        return ()
    paths = [server.ca_file(cert_dir), server.tls_client_cert, server.tls_client_key]
    out = []
    for p in paths:
        if p is None:
            continue
        try:
            st = os.stat(p)
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


def tls_stamps(settings: Settings) -> dict[str, FileStamp]:
    """The TLS files' stamps of every server, as a pool starts with them."""
    return {s.name: _stamp(s, settings.cert_dir) for s in settings.configuration.server}


def kept_servers(old: Settings, new: Settings, stamps: Mapping[str, FileStamp]) -> list[str]:
    """The servers whose settings a reload does not change: their connections are kept."""
    if old.cert_dir != new.cert_dir:
        return []
    before = {s.name: s for s in old.configuration.server}
    return [
        s.name
        for s in new.configuration.server
        if before.get(s.name) == s and stamps.get(s.name) == _stamp(s, new.cert_dir)
    ]


def log_reload_done(
    old_names: list[str],
    cfg: Configuration,
    *,
    token_kept: bool = False,
    api_client_kept: bool = False,
    connections_kept: list[str] | None = None,
) -> None:
    """`reload_done`: the servers added and removed, what was kept, and what runs now."""
    new_names = [s.name for s in cfg.server]
    log.info(
        "reload_done",
        token_kept=token_kept,
        api_client_kept=api_client_kept,
        connections_kept=connections_kept or [],
        servers_added=[n for n in new_names if n not in old_names],
        servers_removed=[n for n in old_names if n not in new_names],
        servers=server_lines(cfg),
        schedules={st: cfg.scheduler.schedule(st) for st in cfg.scheduler.enabled},
        streams_off=list(cfg.scheduler.disabled),
        retain_hours=cfg.retain_hours,
    )
