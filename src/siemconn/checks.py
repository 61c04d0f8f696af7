"""Operator commands that do one thing and report: `check`, `status`, `send-test`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from datetime import UTC, datetime
from typing import TextIO

from siemconn.cli import ExitCode
from siemconn.config import ServerConfig, Settings
from siemconn.errors import QueueError, RuxError, SiemconnError
from siemconn.logging import setup_logging
from siemconn.queue import read_status, render_status
from siemconn.rux.client import RuxClient
from siemconn.syslog.format import encode_event, format_message, frame
from siemconn.syslog.transport import open_transport

CONNECT_TIMEOUT = 10.0
UDP_NOTE = (
    "note: UDP has no acknowledgement: siemconn can only count events as sent, and a receiver whose "
    "buffer is full drops them unseen; use TCP, TLS or RELP when every event matters"
)


def _line(out: TextIO, ok: bool, what: str, detail: str) -> None:
    print(f"{'ok    ' if ok else 'FAILED'} {what}: {detail}", file=out, flush=True)


async def _check_server(server: ServerConfig, settings: Settings) -> tuple[bool, str]:
    if server.server_protocol == "UDP":
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                server.server_host, server.server_port, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            return False, f"cannot resolve {server.server_host}: {exc}"
        return True, f"resolved to {infos[0][4][0]} (UDP: nothing sent)"
    try:
        transport = await open_transport(server, settings.cert_dir, connect_timeout=CONNECT_TIMEOUT)
    except (SiemconnError, OSError, TimeoutError) as exc:
        return False, _reason(exc, server)
    await transport.close()
    if server.server_protocol == "RELP":
        return True, "RELP session opened" + (" over TLS" if server.tls else "")
    return True, "TLS handshake completed" if server.server_protocol == "TLS" else "TCP connection opened"


def _reason(exc: BaseException, server: ServerConfig) -> str:
    if isinstance(exc, SiemconnError):  # our messages already name the server: keep the reason only
        return str(exc).removeprefix(f"syslog server {server.label}: ")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the syslog server listening on that port?)"
    if isinstance(exc, TimeoutError):
        return "timed out (firewall, or wrong host/port?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _quiet_logging(settings: Settings) -> None:
    """One-shot commands: warnings and errors only, on stderr, so stdout stays the command's report."""
    setup_logging(
        log_dir=None,
        fmt="console",
        level="WARNING",
        stream=sys.stderr,
        secrets=[settings.credentials.client_secret.get_secret_value()],
    )


def _check_data_dir(settings: Settings) -> tuple[bool, str]:
    """The queue's directory: writable, its database readable, and whether a service holds it now."""
    data_dir = settings.data_dir
    if not data_dir.exists():
        parent = next((p for p in data_dir.absolute().parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            return (
                False,
                f"{data_dir} does not exist and {parent} is not writable; create it for the siemconn user",
            )
        return True, f"{data_dir} will be created (0700) at the first run"
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return False, f"{data_dir} is not writable by this user; fix its owner or mode"
    try:
        report = read_status(data_dir)
    except QueueError as exc:
        return False, str(exc)
    if report.running_pid is not None:
        return True, f"{data_dir} is in use by a running siemconn (pid {report.running_pid})"
    return True, f"{data_dir} is writable" + ("" if report.exists else " (no queue yet)")


async def run_checks(settings: Settings, out: TextIO) -> int:
    """Validate (done by the caller), then obtain a RUX token and connect to every syslog server."""
    _quiet_logging(settings)
    _line(out, True, "configuration", f"{settings.config_path} is valid")
    all_ok, detail = _check_data_dir(settings)
    _line(out, all_ok, "data directory", detail)
    client = RuxClient(settings.credentials, settings.configuration)
    try:
        await client.authenticate()
        _line(out, True, "Vectra API", f"token obtained from {settings.credentials.base_url}")
    except RuxError as exc:
        all_ok = False
        _line(out, False, "Vectra API", str(exc))
    finally:
        await client.aclose()
    for server in settings.servers:
        ok, detail = await _check_server(server, settings)
        all_ok &= ok
        _line(out, ok, f"syslog server {server.label}", detail)
        if server.server_protocol == "UDP":
            print(f"       {server.name}: {UDP_NOTE}", file=out, flush=True)
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED


def print_status(settings: Settings, out: TextIO) -> int:
    """Print checkpoints, last polls and queue depths; read-only, safe while the service runs."""
    try:
        report = read_status(settings.data_dir)
    except QueueError as exc:
        print(f"error: {exc}", file=out)
        return ExitCode.UNEXPECTED
    print(render_status(report), file=out)
    udp = [s.name for s in settings.servers if s.server_protocol == "UDP"]
    if udp:
        print(
            f"\nUDP destinations ({', '.join(udp)}): 'undelivered' means not yet sent; what was sent is not "
            "known to be delivered (UDP has no acknowledgement)",
            file=out,
        )
    return ExitCode.OK


TEST_EVENT_MARK = "SIEMCONN-TEST-MESSAGE"


async def send_test(settings: Settings, out: TextIO) -> int:
    """Send one clearly marked test message to every server in its configured format."""
    _quiet_logging(settings)
    now = datetime.now(UTC)
    event = {
        "siemconn_test": True,
        "message": f"{TEST_EVENT_MARK}: this is a test message from siemconn send-test, not a Vectra event",
        "event_timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
    }
    payload = encode_event(event)
    all_ok = True
    for server in settings.servers:
        message = format_message(payload, "audit", server, now)
        data = message if server.server_protocol == "UDP" else frame(message, server.framing)
        try:
            transport = await open_transport(server, settings.cert_dir, connect_timeout=CONNECT_TIMEOUT)
            try:
                await transport.write([data])
            finally:
                await transport.close()
        except (SiemconnError, OSError, TimeoutError) as exc:
            all_ok = False
            _line(out, False, f"send-test {server.label}", _reason(exc, server))
            continue
        acked = " and acknowledged (rsp 200)" if server.server_protocol == "RELP" else ""
        _line(
            out,
            True,
            f"send-test {server.label}",
            f"sent {len(data)} bytes ({server.format}){acked}; search your SIEM for "
            f"{json.dumps(TEST_EVENT_MARK)}",
        )
        if server.server_protocol == "UDP":
            print(f"       {server.name}: {UDP_NOTE}", file=out, flush=True)
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED
