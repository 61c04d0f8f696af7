"""The runtime record: how `siemconn status` and `siemconn replay` find the queue of the running service
that uses a given config.json, from any working directory.

Why: a relative `data_dir` is taken from the service's working directory (the reference's rule), so
`cd /tmp && siemconn status --config /srv/x/config.json` would otherwise look in /tmp/data. While it runs,
the service writes RUNTIME_DIR/<key>.json, where <key> is derived from the config file's absolute path,
holding that path, the absolute data_dir, the pid and the working directory. A reader trusts a record
only if its pid is alive and its config path matches.

RUNTIME_DIR, first usable of: `$SIEMCONN_RUNTIME_DIR`; `$RUNTIME_DIRECTORY` (what systemd's
`RuntimeDirectory=` sets; readers look in /run/siemconn and one level below it); `$XDG_RUNTIME_DIR/siemconn`;
`/run/siemconn`. The record holds no secret; it is written atomically (0644) and removed at exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RuntimeRecord", "find_record", "record_key", "remove_record", "runtime_dirs", "write_record"]

RUN_DIR = Path("/run/siemconn")


@dataclass(frozen=True, slots=True)
class RuntimeRecord:
    """What a running service says about itself."""

    path: Path  # the record file
    config: Path
    data_dir: Path
    pid: int
    cwd: Path
    started_at: float


def record_key(config_path: Path) -> str:
    """The record's file name for a config file: a hash of its absolute path."""
    absolute = str(Path(config_path).absolute())
    return hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".json"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def runtime_dirs(environ: Mapping[str, str] | None = None, *, for_writing: bool = False) -> list[Path]:
    """Candidate runtime directories, in order of preference."""
    env = _env(environ)
    out: list[Path] = []
    if env.get("SIEMCONN_RUNTIME_DIR"):
        out.append(Path(env["SIEMCONN_RUNTIME_DIR"]))
        if for_writing:
            return out
    if for_writing and env.get("RUNTIME_DIRECTORY"):
        out.append(Path(env["RUNTIME_DIRECTORY"].split(":")[0]))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "siemconn")
    out.append(RUN_DIR)
    return out


def write_record(config_path: Path, data_dir: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Write this process's record into the first writable runtime directory; None if none is."""
    record = {
        "config": str(Path(config_path).absolute()),
        "data_dir": str(Path(data_dir).absolute()),
        "pid": os.getpid(),
        "cwd": str(Path.cwd()),
        "started_at": time.time(),
    }
    for d in runtime_dirs(environ, for_writing=True):
        try:
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
            path = d / record_key(config_path)
            tmp = d / f".{path.name}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            return path
        except OSError:
            continue
    return None


def remove_record(path: Path | None) -> None:
    """Remove our record at exit (only if it is still ours)."""
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_record(config_path: Path, environ: Mapping[str, str] | None = None) -> RuntimeRecord | None:
    """The record of a live service running with this config file, if one can be found."""
    name = record_key(config_path)
    absolute = str(Path(config_path).absolute())
    candidates: list[Path] = []
    for d in runtime_dirs(environ):
        candidates.append(d / name)
        with contextlib.suppress(OSError):
            candidates.extend(sub / name for sub in sorted(d.iterdir()) if sub.is_dir())
    for path in candidates:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            rec = RuntimeRecord(
                path=path,
                config=Path(str(raw["config"])),
                data_dir=Path(str(raw["data_dir"])),
                pid=int(raw["pid"]),
                cwd=Path(str(raw["cwd"])),
                started_at=float(raw["started_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if str(rec.config) == absolute and _alive(rec.pid):
            return rec
    return None
