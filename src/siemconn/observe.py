"""Health state, the optional metrics/health HTTP endpoint, and the heartbeat file for container checks.

- `Health` keeps what /healthz reports: the event loop beats, and whether each syslog server has been
  reachable recently. It is pure state with an injectable clock.
- `start_http_server(address, metrics, health)` serves GET /metrics (Prometheus text) and GET /healthz
  (200 or 503 with a JSON body) on plain asyncio streams. It runs only when config `metrics_address` is
  set (default null = off); the expected host is 127.0.0.1 (or the container's address when published).
- `write_heartbeat(data_dir, health)` writes DATA_DIR/siemconn.heartbeat; the Docker HEALTHCHECK runs
  ``python -m siemconn.observe healthcheck --config /app/config.json``, which needs no open port:
  exit 0 while the file is fresher than --max-age seconds and says healthy, else 1 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from siemconn.errors import EndpointError

if TYPE_CHECKING:
    from siemconn.metrics import Metrics

HEARTBEAT_FILE = "siemconn.heartbeat"
HEARTBEAT_MAX_AGE = 60.0
LOOP_TIMEOUT = 60.0
_MAX_HEADER_BYTES = 16 * 1024
_REQUEST_TIMEOUT = 10.0


# --- health state --------------------------------------------------------------------------


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


# --- HTTP endpoint -------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:9108' -> ('127.0.0.1', 9108); '[::1]:9108' -> ('::1', 9108). Raise EndpointError if bad."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EndpointError(f"metrics_address {address!r} is not HOST:PORT; expected e.g. '127.0.0.1:9108'")
    return host, int(port)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def _response(status: int, body: bytes, content_type: str, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def _text(status: int, text: str) -> bytes:
    return _response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    line = await reader.readline()
    total = len(line)
    while True:  # skip headers; we need none
        h = await reader.readline()
        total += len(h)
        if total > _MAX_HEADER_BYTES:
            return None
        if h in (b"\r\n", b"\n", b""):
            break
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return parts[0], parts[1].split("?", 1)[0]


def _route(method: str, path: str, metrics: Metrics | None, health: Health) -> bytes:
    head_only = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return _text(405, "method not allowed; use GET")
    if path == "/metrics" and metrics is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return _response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST, head_only)
    if path == "/healthz":
        ok, report = health.status()
        body = json.dumps(report, indent=1).encode() + b"\n"
        return _response(200 if ok else 503, body, "application/json", head_only)
    return _text(404, "not found; try /metrics or /healthz")


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics | None, health: Health
) -> None:
    try:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                request = await _read_request(reader)
        except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):  # line too long
            request = None
        out = _text(400, "bad request") if request is None else _route(*request, metrics, health)
        writer.write(out)
        await writer.drain()
        if request is None:
            # lingering close: read what the client still sends, so that it gets our reply and not a reset
            writer.write_eof()
            async with asyncio.timeout(1.0):
                while await reader.read(65536):
                    pass
    except (TimeoutError, ConnectionError, OSError):
        pass  # a client that hangs or goes away is not our problem
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def start_http_server(address: str, metrics: Metrics | None, health: Health) -> asyncio.Server:
    """Listen on `address` (HOST:PORT) and serve GET /metrics and GET /healthz until `.close()`.

    Raise EndpointError if the address is malformed or cannot be bound (in use, not local).
    """
    host, port = parse_address(address)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(reader, writer, metrics, health)

    try:
        return await asyncio.start_server(handler, host, port, reuse_address=True, limit=_MAX_HEADER_BYTES)
    except OSError as exc:
        raise EndpointError(
            f"metrics_address {address!r} cannot be bound ({exc.strerror or exc}); "
            "choose a free port on a local address such as 127.0.0.1, or set metrics_address to null"
        ) from None


# --- heartbeat file ------------------------------------------------------------------------


def heartbeat_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / HEARTBEAT_FILE


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
    tmp = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
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
    """data_dir from config.json, the rest unvalidated (a relative path is from the current directory)."""
    raw = json.loads(Path(config_path).read_text(encoding="utf-8"))
    value = raw.get("configuration", {}).get("data_dir", "./data") if isinstance(raw, dict) else "./data"
    return Path(value if isinstance(value, str) else "./data")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """`python -m siemconn.observe healthcheck --config PATH [--max-age S] [--liveness]`: 0 if healthy."""
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="python -m siemconn.observe", description="Container health check.")
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
    except (OSError, ValueError) as exc:
        print(f"unhealthy: cannot read {args.config} ({type(exc).__name__})", file=out)
        return 1
    ok, reason = check_heartbeat(data_dir, args.max_age, liveness_only=args.liveness)
    print(reason, file=out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
