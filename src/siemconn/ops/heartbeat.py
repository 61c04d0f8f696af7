"""The heartbeat file, and the container health check that reads it.

`write_heartbeat(data_dir, health)` writes DATA_DIR/siemconn.heartbeat every few seconds (atomically: a
reader sees the old or the new file, never half of one). The Docker HEALTHCHECK runs
``python -m siemconn.ops.heartbeat healthcheck --config /app/config.json``, which needs no open port:
exit 0 while the file is fresher than --max-age seconds and says healthy, else 1 with the reason. The
data_dir comes from the same config loader the service uses.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from siemconn.config import load_configuration
from siemconn.errors import ConfigError
from siemconn.fileperms import write_private
from siemconn.ops.health import Health

__all__ = [
    "HEARTBEAT_FILE",
    "HEARTBEAT_MAX_AGE",
    "check_heartbeat",
    "data_dir_of",
    "heartbeat_path",
    "main",
    "write_heartbeat",
]

HEARTBEAT_FILE = "siemconn.heartbeat"
HEARTBEAT_MAX_AGE = 60.0


def heartbeat_path(data_dir: Path | str) -> Path:
    return _paths(str(data_dir), os.getpid())[0]


@functools.lru_cache(maxsize=8)
def _paths(data_dir: str, pid: int) -> tuple[Path, Path]:
    """The heartbeat file and its temporary name, built once and kept: pathlib interns each part of a
    path, and a part whose last Path is dropped leaves Python's table of interned strings again, so
    building them anew every few seconds churned that table until it doubled (~0.9 MB, issue 30)."""
    path = Path(data_dir) / HEARTBEAT_FILE
    return path, path.with_name(f".{HEARTBEAT_FILE}.{pid}.tmp")


def write_heartbeat(data_dir: Path | str, health: Health | None = None, now: float | None = None) -> Path:
    """Atomically write DATA_DIR/siemconn.heartbeat with the time and, if given, the health verdict.

    Call every few seconds from the event loop (a ~200-byte file). Raise OSError if data_dir is not
    writable; the caller decides whether to log it.
    """
    path = heartbeat_path(data_dir)
    record: dict[str, Any] = {"time": time.time() if now is None else now, "pid": os.getpid()}
    if health is not None:
        ok, report = health.status()
        record["ok"] = ok
        record["problems"] = report["problems"]
    tmp = _paths(str(data_dir), os.getpid())[1]
    write_private(tmp, json.dumps(record) + "\n")  # 0600 whatever the umask
    os.replace(tmp, path)
    return path


def check_heartbeat(
    data_dir: Path | str,
    max_age: float = HEARTBEAT_MAX_AGE,
    now: float | None = None,
    liveness_only: bool = False,
) -> tuple[bool, str]:
    """(healthy, one-line reason) from the heartbeat file in data_dir."""
    path = heartbeat_path(data_dir)
    now = time.time() if now is None else now
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        beat = float(record["time"])
    except FileNotFoundError:
        return False, f"no heartbeat file {path}: siemconn has not started (yet) or uses another data_dir"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return (
            False,
            f"heartbeat file {path} unreadable ({type(exc).__name__}); it is rewritten every few seconds",
        )
    age = now - beat
    if age > max_age:
        return (
            False,
            f"heartbeat is {age:.0f} s old (limit {max_age:.0f} s): siemconn is not running or is stuck",
        )
    if not liveness_only and record.get("ok") is False:
        problems = record.get("problems") or ["unhealthy"]
        return False, "unhealthy: " + "; ".join(str(p) for p in problems)
    return True, f"ok: heartbeat {max(age, 0.0):.0f} s old"


def data_dir_of(config_path: Path | str) -> Path:
    """data_dir from config.json, through the config loader (a relative path is from the current
    directory, as for the service). Raise ConfigError naming every problem of the file."""
    return Path(load_configuration(config_path).data_dir)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """`python -m siemconn.ops.heartbeat healthcheck --config PATH [--max-age S] [--liveness]`: 0 if healthy."""
    out = out or sys.stdout
    p = argparse.ArgumentParser(
        prog="python -m siemconn.ops.heartbeat", description="Container health check."
    )
    sub = p.add_subparsers(dest="command", required=True)
    hc = sub.add_parser(
        "healthcheck", help="exit 0 if the heartbeat in data_dir is fresh and healthy, else 1"
    )
    hc.add_argument("--config", default="config.json", help="config.json to read data_dir from")
    hc.add_argument("--data-dir", default=None, help="heartbeat directory (overrides the config's data_dir)")
    hc.add_argument("--max-age", type=float, default=HEARTBEAT_MAX_AGE, help="seconds (default: 60)")
    hc.add_argument("--liveness", action="store_true", help="only check that the process beats")
    args = p.parse_args(argv)
    try:
        data_dir = Path(args.data_dir) if args.data_dir else data_dir_of(args.config)
    except ConfigError as exc:
        print(f"unhealthy: cannot read {args.config}: {'; '.join(exc.problems)}", file=out)
        return 1
    ok, reason = check_heartbeat(data_dir, args.max_age, liveness_only=args.liveness)
    print(reason, file=out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
