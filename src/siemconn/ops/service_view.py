"""What `siemconn check` checks when the service runs: the running service's paths, not this shell's.

Why: relative paths in config.json (`data_dir`, `cert_dir`, `tls_ca_file`, `tls_client_cert`,
`tls_client_key`) are taken from the working directory of the process that reads them, as the reference
does. `check` run from another directory than the service's would check another queue directory and other
certificate files, and pass or fail for the wrong reason. `status` and `replay` already find the running
service by its runtime record (`siemconn.ops.runtime`); `as_seen_by_service` gives `check` the same view:
the settings with every relative path resolved against the running service's working directory, and its
data_dir as the service recorded it.

Invariant: without a live record for this config file the settings are returned unchanged (the paths
stay relative to the current directory, the behaviour of a service started from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from siemconn.config import LocalSettings
from siemconn.ops.runtime import RuntimeRecord, find_record

__all__ = ["as_seen_by_service"]

_S = TypeVar("_S", bound=LocalSettings)
_SERVER_PATHS = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def _from(cwd: Path, value: str | None) -> str | None:
    if value is None or Path(value).is_absolute():
        return value
    return str(cwd / value)


def as_seen_by_service(settings: _S) -> tuple[_S, RuntimeRecord | None]:
    """`settings` with the running service's paths (module docstring), and its record (None: not running)."""
    record = find_record(settings.config_path)
    if record is None:
        return settings, None
    cfg = settings.configuration
    cwd = record.cwd
    servers = [
        s.model_copy(
            update={k: _from(cwd, getattr(s, k)) for k in _SERVER_PATHS if getattr(s, k) is not None}
        )
        for s in cfg.server
    ]
    seen = cfg.model_copy(
        update={
            "data_dir": str(record.data_dir),
            "cert_dir": _from(cwd, cfg.cert_dir),
            "log_dir": _from(cwd, cfg.log_dir),
            "server": servers,
        }
    )
    return settings.model_copy(update={"configuration": seen}), record
