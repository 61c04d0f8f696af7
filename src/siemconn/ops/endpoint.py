"""The optional metrics/health HTTP endpoint: GET /metrics (Prometheus text) and GET /healthz (200 or 503
with a JSON body) on plain asyncio streams.

It runs only when config `metrics_address` is set (default null = off); the expected host is 127.0.0.1
(or the container's address when published). Invariant: a client that hangs, sends garbage or goes away
never affects the service: every request has a deadline and every error ends only that connection.
"""

from __future__ import annotations

import asyncio
import json

from siemconn.errors import EndpointError
from siemconn.ops.health import Health
from siemconn.ops.metrics import Metrics

__all__ = ["MAX_CONNECTIONS", "parse_address", "start_http_server"]

_MAX_HEADER_BYTES = 16 * 1024
_REQUEST_TIMEOUT = 5.0  # an idle or slow client is closed after this long
MAX_CONNECTIONS = 32  # more concurrent clients are closed at once: bounded file descriptors


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


def _route(method: str, path: str, metrics: Metrics, health: Health) -> bytes:
    head_only = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return _text(405, "method not allowed; use GET")
    if path == "/metrics" and metrics.registry is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return _response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST, head_only)
    if path == "/healthz":
        ok, report = health.status()
        body = json.dumps(report, indent=1).encode() + b"\n"
        return _response(200 if ok else 503, body, "application/json", head_only)
    return _text(404, "not found; try /metrics or /healthz")


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics, health: Health
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


async def start_http_server(address: str, metrics: Metrics, health: Health) -> asyncio.Server:
    """Listen on `address` (HOST:PORT) and serve GET /metrics and GET /healthz until `.close()`.

    Raise EndpointError if the address is malformed or cannot be bound (in use, not local).
    """
    host, port = parse_address(address)

    active = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # at most MAX_CONNECTIONS clients at once; one more is closed right after the accept, so idle
        # clients can never take the file descriptors the syslog writers need
        nonlocal active
        if active >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        active += 1
        try:
            await _serve(reader, writer, metrics, health)
        finally:
            active -= 1

    try:
        return await asyncio.start_server(handler, host, port, reuse_address=True, limit=_MAX_HEADER_BYTES)
    except OSError as exc:
        raise EndpointError(
            f"metrics_address {address!r} cannot be bound ({exc.strerror or exc}); "
            "choose a free port on a local address such as 127.0.0.1, or set metrics_address to null"
        ) from None
