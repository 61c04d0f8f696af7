"""`siemconn status [--json]`: the paths used, checkpoints, last polls and per-server delivery, read
from the queue file without the lock (safe while the service runs); the text is `render`'s."""

from __future__ import annotations

import json
from typing import TextIO

from siemconn.commands.locate import QueueLocation, locate_queue
from siemconn.commands.render import render_status
from siemconn.config import LocalSettings
from siemconn.errors import QueueError
from siemconn.exitcodes import ExitCode
from siemconn.queue import read_status
from siemconn.queue.status import report_dict

__all__ = ["print_status"]


def _lost(exists: bool, loc: QueueLocation) -> bool:
    """No queue where status looked, and that place was a guess or given by hand: exit 1."""
    return not exists and (loc.guessed or loc.how == "from --data-dir")


def print_status(
    settings: LocalSettings, out: TextIO, *, data_dir: str | None = None, as_json: bool = False
) -> int:
    """Print the paths used, checkpoints, last polls and per-server delivery; read-only, safe while the
    service runs. With no queue where it looked it says so with the path and the fix; that exits 1 when
    the path was a guess (a relative data_dir and no running service found, or --data-dir), 0 when it is
    the config's own absolute data_dir (the service has not run yet)."""
    loc = locate_queue(settings.config_path, settings.configuration.data_dir, data_dir)
    try:
        report = read_status(loc.data_dir)
    except QueueError as exc:
        print(f"error: {exc}", file=out)
        return ExitCode.UNEXPECTED
    protocols = {s.name: s.server_protocol for s in settings.servers}
    scheduler = settings.configuration.scheduler
    if as_json:
        data = {
            "config": str(loc.config),
            "data_dir": str(loc.data_dir),
            "data_dir_found": loc.how,
            **report_dict(report),
            "streams_off": list(scheduler.disabled),
            "protocols": protocols,
        }
        if not report.exists:
            data["error"] = f"no queue database yet at {loc.database}; {loc.not_found_hint()}"
        print(json.dumps(data, indent=2, default=str), file=out)
        return ExitCode.UNEXPECTED if _lost(report.exists, loc) else ExitCode.OK
    print(f"config: {loc.config}", file=out)
    print(f"data_dir: {loc.data_dir} ({loc.how})", file=out)
    print(render_status(report, streams_off=scheduler.disabled, protocols=protocols), file=out)
    udp = [s.name for s in settings.servers if s.server_protocol == "UDP"]
    if udp:
        print(
            f"\nUDP destinations ({', '.join(udp)}): 'undelivered' means not yet sent; what was sent is not "
            "known to be delivered (UDP has no acknowledgement)",
            file=out,
        )
    if not report.exists:
        lost = _lost(report.exists, loc)
        print(f"{'error: ' if lost else ''}no queue database yet at {loc.database}", file=out)
        print(f"hint: {loc.not_found_hint()}", file=out)
        return ExitCode.UNEXPECTED if lost else ExitCode.OK
    return ExitCode.OK
