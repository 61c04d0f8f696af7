"""File modes: private files whatever the umask, and warnings for files others can read or change.

* `write_private(path, text)`: create or replace a file with mode 0600 (the heartbeat file).
* `make_private(*paths)`: chmod existing files to 0600 (for the queue's database, -wal and -shm files,
  which SQLite creates with the process umask); missing paths are skipped.
* `permission_warnings(settings)`: what a security engineer would flag, never a reason to refuse to
  start (a container or a read-only mount may not let the operator change modes):
  config.json writable by others (anyone could redirect the events), and the client secret file or a
  TLS client key readable by group or others.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siemconn.config import Settings

__all__ = ["PRIVATE_MODE", "PermissionWarning", "make_private", "permission_warnings", "write_private"]

PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class PermissionWarning:
    """One file whose mode is looser than it should be: what it is, its mode, and the fix."""

    path: Path
    what: str
    mode: int
    problem: str
    fix: str


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (created 0600, and tightened to 0600 if it existed looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
    finally:
        if fd >= 0:
            os.close(fd)


def make_private(*paths: Path) -> None:
    """chmod each existing path to 0600; missing files are skipped, other errors propagate."""
    for p in paths:
        try:
            os.chmod(p, PRIVATE_MODE)
        except FileNotFoundError:
            continue


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def permission_warnings(settings: Settings) -> list[PermissionWarning]:
    """Files of this configuration whose modes let other users read secrets or change the config."""
    out: list[PermissionWarning] = []
    mode = _mode(settings.config_path)
    if mode is not None and mode & stat.S_IWOTH:
        out.append(
            PermissionWarning(
                settings.config_path,
                "config.json",
                mode,
                "writable by every user (anyone could change where events go)",
                f"chmod o-w {settings.config_path}",
            )
        )
    readable = stat.S_IRGRP | stat.S_IROTH
    if settings.secret_file is not None:
        mode = _mode(settings.secret_file)
        if mode is not None and mode & readable:
            out.append(
                PermissionWarning(
                    settings.secret_file,
                    "CLIENT_SECRET_FILE",
                    mode,
                    "readable by group or others (the client secret)",
                    f"chmod 600 {settings.secret_file}",
                )
            )
    for server in settings.servers:
        if server.tls_client_key is None:
            continue
        key = Path(server.tls_client_key)
        if not key.is_absolute() and not key.exists():
            key = settings.cert_dir / key
        mode = _mode(key)
        if mode is not None and mode & readable:
            out.append(
                PermissionWarning(
                    key,
                    f"tls_client_key of server {server.name}",
                    mode,
                    "readable by group or others (the TLS private key)",
                    f"chmod 600 {key}",
                )
            )
    return out
