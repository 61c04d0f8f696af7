"""`siemconn quarantine export [--output FILE] | count`: the quarantined events as JSON lines (raw
bytes that are not UTF-8 as base64), or their counts per stream, destination and reason."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from siemconn.commands.locate import locate_queue
from siemconn.config import LocalSettings
from siemconn.errors import QueueError
from siemconn.exitcodes import ExitCode
from siemconn.queue import export_row, read_quarantine, read_status

__all__ = ["quarantine_count", "quarantine_export"]


def _queue_dir(settings: LocalSettings) -> Path:
    """The data_dir of the service that runs with this config (found as `status` finds it)."""
    return locate_queue(settings.config_path, settings.configuration.data_dir, None).data_dir


def quarantine_export(settings: LocalSettings, output: str | None, out: TextIO, err: TextIO) -> int:
    """Write every quarantined event as one JSON line (to `output`, created 0600, or to `out`)."""
    try:
        if output is None:
            n = _write_quarantine(settings, out)
        else:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                n = _write_quarantine(settings, f)
    except QueueError as exc:
        print(f"error: {exc}", file=err)
        return ExitCode.UNEXPECTED
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=err)
        return ExitCode.UNEXPECTED
    print(f"{n} quarantined events exported" + (f" to {output}" if output else ""), file=err)
    return ExitCode.OK


def _write_quarantine(settings: LocalSettings, f: TextIO) -> int:
    n = 0
    for q in read_quarantine(_queue_dir(settings)):
        f.write(json.dumps(export_row(q), ensure_ascii=False) + "\n")
        n += 1
    f.flush()
    return n


def quarantine_count(settings: LocalSettings, out: TextIO) -> int:
    """Print the number of quarantined events, per stream (and destination) and reason."""
    try:
        report = read_status(_queue_dir(settings))
    except QueueError as exc:
        print(f"error: {exc}", file=out)
        return ExitCode.UNEXPECTED
    print(f"{report.quarantined_total} quarantined events", file=out)
    for q in report.quarantined:
        where = q.key if q.destination is None else f"{q.key} -> {q.destination}"
        print(f"  {where:<38}{q.reason:<16}{q.count:>8}", file=out)
    return ExitCode.OK
