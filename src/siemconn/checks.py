"""Operator commands that do one thing and report: `check`, `status`, `send-test` (and `locate_queue`,
how `status` and `replay` find the queue a running service uses)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from siemconn.cli import ExitCode
from siemconn.config import ServerConfig, Settings
from siemconn.errors import QueueError, RuxAuthError, RuxError, RuxPermissionError, SiemconnError
from siemconn.logging import setup_logging
from siemconn.ops.runtime import RuntimeRecord, find_record
from siemconn.queue import read_status, render_status
from siemconn.queue.status import report_dict
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import stream_specs
from siemconn.syslog.format import encode_event, format_message, frame
from siemconn.syslog.transport import open_transport

CONNECT_TIMEOUT = 10.0


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


async def _check_streams(client: RuxClient, settings: Settings, out: TextIO) -> bool:
    """One small request per enabled stream (event streams: limit=1). A 403 names the role to add."""
    all_ok = True
    scheduler = settings.configuration.scheduler
    for stream in scheduler.enabled:
        for spec in stream_specs(stream):
            try:
                detail = await client.probe(spec)
            except RuxPermissionError as exc:
                all_ok = False
                _line(
                    out,
                    False,
                    f"stream {spec.key}",
                    f"HTTP 403: the API client lacks the {spec.role} role; add it in the Vectra UI "
                    f'(Manage > API Clients), or turn the stream off with "scheduler": {{"{stream}": null}} '
                    f"({exc})",
                )
                continue
            except RuxAuthError as exc:
                _line(out, False, f"stream {spec.key}", str(exc))
                return False
            except RuxError as exc:
                all_ok = False
                _line(out, False, f"stream {spec.key}", str(exc))
                continue
            _line(out, True, f"stream {spec.key}", detail)
    for stream in scheduler.disabled:
        _line(out, True, f"stream {stream}", "off (not polled)")
    return all_ok


async def run_checks(settings: Settings, out: TextIO) -> int:
    """Validate (done by the caller), obtain a RUX token, try every enabled stream once, and connect to
    every syslog server."""
    _quiet_logging(settings)
    _line(out, True, "configuration", f"{settings.config_path} is valid")
    all_ok, detail = _check_data_dir(settings)
    _line(out, all_ok, "data directory", detail)
    client = RuxClient(settings.credentials, settings.configuration)
    try:
        await client.authenticate()
        _line(out, True, "Vectra API", f"token obtained from {settings.credentials.base_url}")
        all_ok &= await _check_streams(client, settings, out)
    except RuxError as exc:
        all_ok = False
        _line(out, False, "Vectra API", str(exc))
    finally:
        await client.aclose()
    for server in settings.servers:
        ok, detail = await _check_server(server, settings)
        all_ok &= ok
        streams = ", ".join(settings.configuration.server_streams(server)) or "no stream that is on"
        _line(out, ok, f"syslog server {server.label}", f"{detail}; receives {streams}")
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED


@dataclass(frozen=True, slots=True)
class QueueLocation:
    """Where `status`/`replay` look for the queue, and why there (printed, so the answer is never
    silently about another queue)."""

    config: Path  # absolute
    data_dir: Path  # absolute
    how: str  # one line: how data_dir was found
    record: RuntimeRecord | None
    configured: str  # data_dir as written in config.json

    @property
    def database(self) -> Path:
        return self.data_dir / "queue.db"

    def not_found_hint(self) -> str:
        """What to do when there is no queue at data_dir."""
        if Path(self.configured).is_absolute():
            return (
                f"data_dir {self.configured!r} has no queue yet: the service has not run with this "
                "config, or runs with another config file"
            )
        return (
            f"data_dir {self.configured!r} in {self.config} is relative: the service takes it from ITS "
            f"working directory, and no running service was found for this config (looked for its "
            "runtime record), so it was taken from this shell's directory. Run status from the service's "
            "working directory (systemd: WorkingDirectory=, e.g. cd /var/lib/siemconn), or pass "
            "--data-dir /path/to/data"
        )


def locate_queue(config_path: Path, configured: str, data_dir: str | None = None) -> QueueLocation:
    """The queue to report on: --data-dir if given; else the data_dir of a running service that uses
    this config file (its runtime record, siemconn.ops.runtime); else `configured` (config.json's data_dir), a relative one
    from the current directory (as `run` takes it)."""
    config = Path(config_path).absolute()
    if data_dir is not None:
        return QueueLocation(config, Path(data_dir).absolute(), "from --data-dir", None, configured)
    record = find_record(config)
    if record is not None:
        how = f"from the running service (pid {record.pid}, working directory {record.cwd})"
        return QueueLocation(config, record.data_dir, how, record, configured)
    if Path(configured).is_absolute():
        return QueueLocation(config, Path(configured), "from config.json", None, configured)
    how = f"from config.json ({configured!r}, relative: taken from the current directory {Path.cwd()})"
    return QueueLocation(config, Path(configured).absolute(), how, None, configured)


def print_status(
    settings: Settings, out: TextIO, *, data_dir: str | None = None, as_json: bool = False
) -> int:
    """Print the paths used, checkpoints, last polls and per-server delivery; read-only, safe while the
    service runs. Exit 1 when there is no queue at the path it found (with the path and the fix)."""
    loc = locate_queue(settings.config_path, settings.configuration.data_dir, data_dir)
    try:
        report = read_status(loc.data_dir)
    except QueueError as exc:
        print(f"error: {exc}", file=out)
        return ExitCode.UNEXPECTED
    protocols = {s.name: s.server_protocol for s in settings.servers}
    scheduler = settings.configuration.scheduler
    if as_json:
        data = {
            "config": str(loc.config),
            "data_dir": str(loc.data_dir),
            "data_dir_found": loc.how,
            **report_dict(report),
            "streams_off": list(scheduler.disabled),
            "protocols": protocols,
        }
        if not report.exists:
            data["error"] = f"no queue database at {loc.database}; {loc.not_found_hint()}"
        print(json.dumps(data, indent=2, default=str), file=out)
        return ExitCode.OK if report.exists else ExitCode.UNEXPECTED
    print(f"config: {loc.config}", file=out)
    print(f"data_dir: {loc.data_dir} ({loc.how})", file=out)
    if not report.exists:
        print(f"error: no queue database at {loc.database}", file=out)
        print(f"hint: {loc.not_found_hint()}", file=out)
        return ExitCode.UNEXPECTED
    print(render_status(report, streams_off=scheduler.disabled, protocols=protocols), file=out)
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
        _line(
            out,
            True,
            f"send-test {server.label}",
            f"sent {len(data)} bytes ({server.format}); search your SIEM for {json.dumps(TEST_EVENT_MARK)}",
        )
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED
