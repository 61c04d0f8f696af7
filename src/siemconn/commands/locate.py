"""Where `status`, `quarantine` and `replay` find the queue a running service uses (`locate_queue`):
--data-dir, else the running service's runtime record (siemconn.ops.runtime), else config.json's data_dir.
The answer says how it was found, so it is never silently about another queue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from siemconn.ops.runtime import RuntimeRecord, find_record

__all__ = ["QueueLocation", "locate_queue"]


@dataclass(frozen=True, slots=True)
class QueueLocation:
    """Where `status`/`replay` look for the queue, and why there (printed, so the answer is never
    silently about another queue)."""

    config: Path  # absolute
    data_dir: Path  # absolute
    how: str  # one line: how data_dir was found
    record: RuntimeRecord | None
    configured: str  # data_dir as written in config.json
    guessed: bool = False  # a relative data_dir taken from this shell's directory: may not be the service's

    @property
    def database(self) -> Path:
        return self.data_dir / "queue.db"

    def not_found_hint(self) -> str:
        """What to do when there is no queue at data_dir."""
        if Path(self.configured).is_absolute():
            return (
                f"data_dir {self.configured!r} has no queue yet: the service has not run with this "
                "config, or runs with another config file"
            )
        return (
            f"data_dir {self.configured!r} in {self.config} is relative: the service takes it from ITS "
            f"working directory, and no running service was found for this config (looked for its "
            "runtime record), so it was taken from this shell's directory. Run status from the service's "
            "working directory (systemd: WorkingDirectory=, e.g. cd /var/lib/siemconn), or pass "
            "--data-dir /path/to/data"
        )


def locate_queue(config_path: Path, configured: str, data_dir: str | None = None) -> QueueLocation:
    """The queue to report on: --data-dir if given; else the data_dir of a running service that uses
    this config file (its runtime record, siemconn.ops.runtime); else `configured` (config.json's data_dir), a relative one
    from the current directory (as `run` takes it)."""
    config = Path(config_path).absolute()
    if data_dir is not None:
        return QueueLocation(config, Path(data_dir).absolute(), "from --data-dir", None, configured)
    record = find_record(config)
    if record is not None:
        how = f"from the running service (pid {record.pid}, working directory {record.cwd})"
        return QueueLocation(config, record.data_dir, how, record, configured)
    if Path(configured).is_absolute():
        return QueueLocation(config, Path(configured), "from config.json", None, configured)
    how = f"from config.json ({configured!r}, relative: taken from the current directory {Path.cwd()})"
    return QueueLocation(config, Path(configured).absolute(), how, None, configured, guessed=True)
