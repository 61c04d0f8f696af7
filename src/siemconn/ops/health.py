"""Health state: whether the event loop beats and each syslog server has been reachable recently.

Pure state with an injectable clock; the HTTP endpoint (/healthz) and the heartbeat file report it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["LOOP_TIMEOUT", "Health"]

LOOP_TIMEOUT = 60.0


@dataclass
class _ServerState:
    last_ok: float | None = None
    failing_since: float | None = None  # start of the current run of failures; None after a success
    reason: str | None = None


class Health:
    """Liveness of the event loop and reachability of each syslog server.

    Healthy while the loop beat (`loop_alive`) within `loop_timeout` seconds and no server has been
    failing for longer than `window` seconds. A server that is idle or was never tried is healthy; a
    failing server becomes unhealthy `window` seconds after its first failure, and healthy again at
    its next `server_ok`.
    """

    def __init__(
        self,
        servers: Iterable[str],
        window: float,
        clock: Callable[[], float] = time.time,
        loop_timeout: float = LOOP_TIMEOUT,
    ) -> None:
        self._clock = clock
        self._window = float(window)
        self._loop_timeout = float(loop_timeout)
        self._started = clock()
        self._last_beat = self._started
        self._servers: dict[str, _ServerState] = {name: _ServerState() for name in servers}

    def reconfigure(self, servers: Iterable[str], window: float) -> None:
        """A reload: keep the state of servers still configured, forget removed ones, add new ones."""
        names = list(servers)
        self._window = float(window)
        self._servers = {name: self._servers.get(name) or _ServerState() for name in names}

    def loop_alive(self) -> None:
        """Record that the event loop runs (call every few seconds)."""
        self._last_beat = self._clock()

    def server_ok(self, name: str) -> None:
        """Record a successful connect or write to server `name`."""
        st = self._servers.setdefault(name, _ServerState())
        st.last_ok = self._clock()
        st.failing_since = None
        st.reason = None

    def server_failed(self, name: str, reason: str) -> None:
        """Record a failed connect or write to server `name`, with a short reason (no secret)."""
        st = self._servers.setdefault(name, _ServerState())
        if st.failing_since is None:
            st.failing_since = self._clock()
        st.reason = reason

    def status(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, JSON-able report). The report's `problems` names each failing part and why."""
        now = self._clock()
        problems: list[str] = []
        loop_age = max(0.0, now - self._last_beat)
        loop_ok = loop_age <= self._loop_timeout
        if not loop_ok:
            problems.append(
                f"event loop: no heartbeat for {loop_age:.0f} s (limit {self._loop_timeout:.0f} s)"
            )
        servers: dict[str, dict[str, Any]] = {}
        for name, st in self._servers.items():
            failing_for = None if st.failing_since is None else max(0.0, now - st.failing_since)
            ok = failing_for is None or failing_for <= self._window
            servers[name] = {
                "ok": ok,
                "state": "up" if failing_for is None else ("failing" if ok else "down"),
                "last_ok_seconds_ago": None if st.last_ok is None else round(now - st.last_ok, 1),
                "failing_for_seconds": None if failing_for is None else round(failing_for, 1),
                "reason": st.reason,
            }
            if not ok:
                problems.append(
                    f"server {name}: unreachable for {failing_for:.0f} s "
                    f"(window {self._window:.0f} s): {st.reason}"
                )
        healthy = not problems
        report: dict[str, Any] = {
            "status": "ok" if healthy else "unhealthy",
            "problems": problems,
            "loop": {"ok": loop_ok, "last_beat_seconds_ago": round(loop_age, 1)},
            "servers": servers,
            "window_seconds": self._window,
            "uptime_seconds": round(now - self._started, 1),
        }
        return healthy, report
