"""What the one-shot commands share: the `ok`/`FAILED` report line, logging kept off stdout, the
secrets redacted from every output, and the words for a failed syslog connection."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from siemconn.config import ServerConfig
from siemconn.errors import SiemconnError
from siemconn.logging import setup_logging

__all__ = ["CONNECT_TIMEOUT", "UDP_NOTE", "env_secrets", "failure_reason", "line", "quiet_logging"]

CONNECT_TIMEOUT = 10.0
UDP_NOTE = (
    "note: UDP has no acknowledgement: siemconn can only count events as sent, and a receiver whose "
    "buffer is full drops them unseen; use TCP, TLS or RELP when every event matters"
)


def line(out: TextIO, ok: bool, what: str, detail: str) -> None:
    print(f"{'ok    ' if ok else 'FAILED'} {what}: {detail}", file=out, flush=True)


def failure_reason(exc: BaseException, server: ServerConfig) -> str:
    if isinstance(exc, SiemconnError):  # our messages already name the server: keep the reason only
        return str(exc).removeprefix(f"syslog server {server.label}: ")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the syslog server listening on that port?)"
    if isinstance(exc, TimeoutError):
        return "timed out (firewall, or wrong host/port?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def quiet_logging(secrets: list[str], level: str = "WARNING") -> None:
    """One-shot commands: warnings and errors only, on stderr, so stdout stays the command's report."""
    setup_logging(log_dir=None, fmt="console", level=level, stream=sys.stderr, secrets=secrets)


def env_secrets() -> list[str]:
    """CLIENT_SECRET if set: redacted from output even by commands that do not use it."""
    value = os.environ.get("CLIENT_SECRET", "")
    return [value] if value else []
