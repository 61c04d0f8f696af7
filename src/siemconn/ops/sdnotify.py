"""systemd's sd_notify protocol with the standard library only.

A `Notifier` sends datagrams such as ``READY=1`` to the AF_UNIX socket named by $NOTIFY_SOCKET
(a path, or an abstract socket written with a leading '@'). When $NOTIFY_SOCKET is unset (Docker,
a terminal, tests) every method is a no-op that returns False, so callers never need to check.

Sends never block the event loop: the socket is non-blocking and a send that fails is dropped and
logged once (a missed WATCHDOG=1 is repeated at the next ping anyway).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from siemconn.logging import get_logger

__all__ = ["Notifier", "socket_address"]

log = get_logger(__name__)


def socket_address(value: str) -> str | bytes | None:
    """The address to send to for a $NOTIFY_SOCKET value, or None if it is not a unix socket."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:..., which this implementation does not speak


class Notifier:
    """Tells systemd about readiness, liveness and shutdown; silent outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._pid = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = socket_address(raw) if raw else None
        if raw and self._address is None:
            log.warning("sd_notify_disabled", detail="unsupported NOTIFY_SOCKET", notify_socket=raw)
        self._watchdog = self._parse_watchdog(env)
        self._sock: socket.socket | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        """True when $NOTIFY_SOCKET names a unix socket we send to."""
        return self._address is not None

    def _parse_watchdog(self, env: Mapping[str, str]) -> float | None:
        usec = env.get("WATCHDOG_USEC", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        wpid = env.get("WATCHDOG_PID", "")
        if wpid and (not wpid.isdigit() or int(wpid) != self._pid):
            return None  # the watchdog is meant for another process
        return int(usec) / 1_000_000

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds when systemd expects WATCHDOG=1 pings from this process, else None.

        Ping at least every half of it.
        """
        return self._watchdog

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram. True if the datagram was sent."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self._address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning("sd_notify_send_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        if self._failing:
            self._failing = False
            log.info("sd_notify_recovered")
        return True

    def ready(self) -> bool:
        """READY=1: startup is finished (systemd's Type=notify waits for this)."""
        return self.notify("READY=1", f"MAINPID={self._pid}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the event loop is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """STATUS=...: one line shown by `systemctl status`."""
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
