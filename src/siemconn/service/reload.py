"""SIGHUP: read and check the new configuration before the running service quiesces for it.

Invariants: an invalid config.json or environment is logged (`reload_failed`, every problem) and changes
nothing; the options a running process cannot change (`RESTART_ONLY`) are logged as
`reload_needs_restart` and keep their running value in what is applied. The quiesce and apply steps are
`siemconn.service.process.Service`'s: this module decides only what a reload would apply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from siemconn.config import Configuration, Settings, load_settings
from siemconn.errors import ConfigError
from siemconn.logging import get_logger
from siemconn.service.startup import server_lines

__all__ = ["RELOAD_WRITER_TIMEOUT", "RESTART_ONLY", "log_reload_done", "read_reload", "restart_only"]

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


def log_reload_done(old_names: list[str], cfg: Configuration) -> None:
    """`reload_done`: the servers added and removed, and what runs now."""
    new_names = [s.name for s in cfg.server]
    log.info(
        "reload_done",
        servers_added=[n for n in new_names if n not in old_names],
        servers_removed=[n for n in old_names if n not in new_names],
        servers=server_lines(cfg),
        schedules={st: cfg.scheduler.schedule(st) for st in cfg.scheduler.enabled},
        streams_off=list(cfg.scheduler.disabled),
        retain_hours=cfg.retain_hours,
    )
