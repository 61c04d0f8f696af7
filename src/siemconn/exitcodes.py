"""The process exit codes (`ExitCode`), at the bottom of the import order as httpx keeps its status codes:
the commands and the service return them, and the command line only maps them to `sys.exit`."""

from __future__ import annotations

from typing import Final

__all__ = ["ExitCode"]


class ExitCode:
    """The process exit codes (plain ints; the README's table and the systemd unit use the numbers)."""

    OK: Final = 0
    UNEXPECTED: Final = 1
    CONFIG: Final = 2  # invalid configuration or environment, or credentials rejected at startup
    ALL_SERVERS_DOWN: Final = 3
    USAGE: Final = 64  # sysexits.h EX_USAGE: bad command line (2 stays reserved for an invalid config)
    BROKEN_PIPE: Final = 141  # 128 + SIGPIPE: the reader of stdout went away (`siemconn status | head -2`)
