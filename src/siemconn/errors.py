"""The exception tree of siemconn.

Every class says in one line when it is raised. Messages name the thing that failed, the value
and the fix; they never contain a secret (client secret, access token or refresh token).
"""

from __future__ import annotations

__all__ = [
    "AllServersDownError",
    "ConfigError",
    "DeliveryError",
    "EndpointError",
    "QueueCorruptError",
    "QueueDiskFullError",
    "QueueError",
    "QueueLockedError",
    "QueueNoRoomError",
    "QueueUnavailableError",
    "ReplayRefusedError",
    "RuxAuthError",
    "RuxError",
    "RuxPermissionError",
    "RuxRateLimitedError",
    "RuxResponseError",
    "RuxUnavailableError",
    "SiemconnError",
    "SyslogError",
    "TlsConfigError",
]


class SiemconnError(Exception):
    """Base class of every error siemconn raises on purpose."""


# --- configuration -------------------------------------------------------------------------


class ConfigError(SiemconnError):
    """Raised when config.json or the environment is missing, unreadable or invalid (exit code 2).

    `problems` lists every problem; `render()` heads config.json's under `source` (the file's absolute
    path) and the environment's under "environment", so a missing variable is not blamed on the file.
    """

    def __init__(
        self, problems: list[str], source: str = "configuration", environment: list[str] | None = None
    ) -> None:
        self.file_problems = list(problems)
        self.environment_problems = list(environment or [])
        self.problems = self.file_problems + self.environment_problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines: list[str] = []
        for head, items in ((self.source, self.file_problems), ("environment", self.environment_problems)):
            if items:
                n = len(items)
                lines.append(f"{head}: {n} problem{'s' if n != 1 else ''}")
                lines.extend(f"  - {p}" for p in items)
        return "\n".join(lines or [f"{self.source}: 0 problems"])


# --- RUX source ----------------------------------------------------------------------------


class RuxError(SiemconnError):
    """Base class of errors talking to the Vectra RUX API."""


class RuxAuthError(RuxError):
    """Raised when the token endpoint rejects CLIENT_ID / CLIENT_SECRET (not retried)."""


class RuxPermissionError(RuxError):
    """Raised when the API answers 403: the API client's role lacks access to a stream."""


class RuxUnavailableError(RuxError):
    """Raised when the API stays unreachable (5xx, timeouts, connection errors) after bounded retries."""


class RuxRateLimitedError(RuxError):
    """Raised when the API keeps answering 429 after the configured number of tries."""


class RuxResponseError(RuxError):
    """Raised when an API response is not the expected JSON envelope (checkpoint is not moved)."""


# --- durable queue -------------------------------------------------------------------------


class QueueError(SiemconnError):
    """Base class of durable-queue errors."""


class QueueCorruptError(QueueError):
    """Raised at startup when the queue database file is not a readable siemconn database."""


class QueueLockedError(QueueError):
    """Raised at startup when another siemconn instance already uses the data directory."""


class QueueUnavailableError(QueueError):
    """Raised when the queue database cannot be opened or written (permissions, read-only disk)."""


class QueueDiskFullError(QueueUnavailableError):
    """Raised when a queue write failed because the disk is full, even after the disk reserve was used."""


class QueueNoRoomError(QueueError):
    """Raised instead of committing a page that would take free disk space under min_free_disk_mb (or into
    the disk reserve): nothing was written, the checkpoint did not move, pulling pauses."""


class ReplayRefusedError(QueueError):
    """`siemconn replay`: the queue file cannot serve the request (not a siemconn queue, no replay
    table, an unknown server, nothing retained, the window before the oldest retained page); the
    message is the operator's sentence."""


# --- syslog sink ---------------------------------------------------------------------------


class SyslogError(SiemconnError):
    """Base class of syslog delivery errors."""


class TlsConfigError(SyslogError):
    """Raised when a TLS server's CA, client certificate or key file is missing or not valid PEM."""


class DeliveryError(SyslogError):
    """Raised when a syslog server cannot be reached or a write to it fails (the batch is retried)."""


class AllServersDownError(SiemconnError):
    """Raised when every configured syslog server is declared down after retry_count (exit code 3)."""


# --- operations ----------------------------------------------------------------------------


class EndpointError(SiemconnError):
    """Raised when the metrics/health HTTP endpoint cannot listen on metrics_address (malformed, in use)."""
