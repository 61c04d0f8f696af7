"""Operator commands that do one thing and report: `check`, `status`, `send-test`.

`status` and `send-test` take `LocalSettings` (config.json only): they never call the API, so they need
no credentials; `locate_queue` is how `status` and `replay` find the queue a running service uses. `check` answers each problem in one line within seconds: it first opens a plain TCP
connection (to the API, and to a TLS syslog server before its handshake), so a refused port, a silent
firewall and a peer that does not speak TLS are told apart instead of ending in a retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from siemconn.config import LocalSettings, ServerConfig, Settings
from siemconn.errors import QueueError, RuxAuthError, RuxError, RuxPermissionError, SiemconnError
from siemconn.exitcodes import ExitCode
from siemconn.fileperms import permission_warnings
from siemconn.logging import setup_logging
from siemconn.ops.runtime import RuntimeRecord, find_record
from siemconn.queue import export_row, read_quarantine, read_status, render_status
from siemconn.queue.status import report_dict
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import stream_specs
from siemconn.syslog.format import encode_event, format_message, frame
from siemconn.syslog.transport import open_transport

__all__ = [
    "CONNECT_TIMEOUT",
    "TEST_EVENT_MARK",
    "check_server",
    "locate_queue",
    "print_status",
    "quarantine_count",
    "quarantine_export",
    "run_checks",
    "send_test",
]

CONNECT_TIMEOUT = 10.0
UDP_NOTE = (
    "note: UDP has no acknowledgement: siemconn can only count events as sent, and a receiver whose "
    "buffer is full drops them unseen; use TCP, TLS or RELP when every event matters"
)
API_CONNECT_TIMEOUT = 5.0  # `check`'s TCP probe of the API: a clear answer within seconds
TLS_ANSWER_TIMEOUT = 5.0  # a TLS server answers a ClientHello at once; silence means it speaks no TLS
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _line(out: TextIO, ok: bool, what: str, detail: str) -> None:
    print(f"{'ok    ' if ok else 'FAILED'} {what}: {detail}", file=out, flush=True)


async def check_server(server: ServerConfig, settings: LocalSettings) -> tuple[bool, str]:
    """Whether `server` can be reached, and why (UDP: its address resolves; TCP, TLS, RELP: a transport opens)."""
    if server.server_protocol == "UDP":
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                server.server_host, server.server_port, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            return False, f"cannot resolve {server.server_host}: {exc}"
        return True, f"resolved to {infos[0][4][0]} (UDP: nothing sent)"
    if server.server_protocol == "TLS":
        # TCP first: a refused or filtered port is said as such, not as a TLS failure
        problem = await _tcp_probe(server.server_host, server.server_port, CONNECT_TIMEOUT)
        if problem is not None:
            return False, problem
    try:
        transport = await open_transport(
            server,
            settings.cert_dir,
            connect_timeout=TLS_ANSWER_TIMEOUT if server.server_protocol == "TLS" else CONNECT_TIMEOUT,
        )
    except (SiemconnError, OSError, TimeoutError) as exc:
        if server.server_protocol == "TLS" and _no_tls_answer(exc):
            return False, (
                f"the TCP connection opened but the peer did not speak TLS (no TLS answer within "
                f"{TLS_ANSWER_TIMEOUT:g} s, or it closed the connection): is {server.server_port} a "
                "plain-TCP syslog port? Use its TLS port, or server_protocol TCP"
            )
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


def _no_tls_answer(exc: BaseException) -> bool:
    """True when a TLS handshake to an open TCP port met silence or a hang-up: no TLS server there."""
    text = str(exc).lower()
    return isinstance(exc, TimeoutError | ConnectionResetError) or any(
        k in text for k in ("no answer within", "eof", "connection reset", "closed the connection")
    )


async def _tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """Open and close one TCP connection; None if it opened, else one sentence naming host and port."""
    where = f"{host}:{port}"
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError:
        return f"cannot connect to {where}: connection refused (nothing listens on that port)"
    except TimeoutError:
        return f"cannot connect to {where}: no answer within {timeout:g} s (firewall, or wrong host/port?)"
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except OSError as exc:
        return f"cannot connect to {where}: {(exc.strerror or str(exc)).lower()}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def _api_endpoint(base_url: str) -> tuple[str, int]:
    url = httpx.URL(base_url)
    return url.host, url.port or (443 if url.scheme == "https" else 80)


def _quiet_logging(secrets: list[str], level: str = "WARNING") -> None:
    """One-shot commands: warnings and errors only, on stderr, so stdout stays the command's report."""
    setup_logging(log_dir=None, fmt="console", level=level, stream=sys.stderr, secrets=secrets)


def _env_secret() -> list[str]:
    """CLIENT_SECRET if set: redacted from output even by commands that do not use it."""
    value = os.environ.get("CLIENT_SECRET", "")
    return [value] if value else []


def _check_data_dir(settings: LocalSettings) -> tuple[bool, str]:
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
    # the report says what failed, one line each: the client's retry/backoff log lines would only repeat it
    _quiet_logging([settings.credentials.client_secret.get_secret_value()], level="CRITICAL")
    _line(out, True, "configuration", f"{settings.config_path.absolute()} is valid")
    all_ok, detail = _check_data_dir(settings)
    _line(out, all_ok, "data directory", detail)
    for w in permission_warnings(settings):  # a warning: `check` still passes
        print(f"warn   {w.what}: {w.path} is {w.problem} (mode {w.mode:04o}); fix: {w.fix}", file=out)
    client, detail = await _check_api(settings)
    _line(out, client is not None, "Vectra API", detail)
    if client is None:
        all_ok = False
    else:
        try:
            all_ok &= await _check_streams(client, settings, out)
        finally:
            await client.aclose()
    for server in settings.servers:
        ok, detail = await check_server(server, settings)
        all_ok &= ok
        streams = ", ".join(settings.configuration.server_streams(server)) or "no stream that is on"
        _line(out, ok, f"syslog server {server.label}", f"{detail}; receives {streams}")
        if server.server_protocol == "UDP":
            print(f"       {server.name}: {UDP_NOTE}", file=out, flush=True)
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED


async def _check_api(settings: Settings) -> tuple[RuxClient | None, str]:
    """Probe the API's TCP port, then get a token with one try (no backoff: `check` answers at once).

    Returns the authenticated client (the caller closes it) and the line's detail, or None and the problem.
    """
    base_url = settings.credentials.base_url
    if not any(os.environ.get(name) for name in _PROXY_ENV):  # through a proxy, the proxy connects
        host, port = _api_endpoint(base_url)
        problem = await _tcp_probe(host, port, API_CONNECT_TIMEOUT)
        if problem is not None:
            return None, f"{problem}; check BASE_URL ({base_url}), DNS and firewall"
    client = RuxClient(settings.credentials, settings.configuration, unavailable_tries=1)
    try:
        await client.authenticate()
    except RuxError as exc:
        await client.aclose()
        return None, str(exc)
    except BaseException:
        await client.aclose()
        raise
    return client, f"token obtained from {base_url}"


@dataclass(frozen=True, slots=True)
class QueueLocation:
    """Where `status`/`replay` look for the queue, and why there (printed, so the answer is never
    silently about another queue)."""

    config: Path  # absolute
    data_dir: Path  # absolute
    how: str  # one line: how data_dir was found
    record: RuntimeRecord | None
    configured: str  # data_dir as written in config.json
    guessed: bool = False  # a relative data_dir taken from this shell's directory: may not be the service's

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
    return QueueLocation(config, Path(configured).absolute(), how, None, configured, guessed=True)


def _lost(exists: bool, loc: QueueLocation) -> bool:
    """No queue where status looked, and that place was a guess or given by hand: exit 1."""
    return not exists and (loc.guessed or loc.how == "from --data-dir")


def print_status(
    settings: LocalSettings, out: TextIO, *, data_dir: str | None = None, as_json: bool = False
) -> int:
    """Print the paths used, checkpoints, last polls and per-server delivery; read-only, safe while the
    service runs. With no queue where it looked it says so with the path and the fix; that exits 1 when
    the path was a guess (a relative data_dir and no running service found, or --data-dir), 0 when it is
    the config's own absolute data_dir (the service has not run yet)."""
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
            data["error"] = f"no queue database yet at {loc.database}; {loc.not_found_hint()}"
        print(json.dumps(data, indent=2, default=str), file=out)
        return ExitCode.UNEXPECTED if _lost(report.exists, loc) else ExitCode.OK
    print(f"config: {loc.config}", file=out)
    print(f"data_dir: {loc.data_dir} ({loc.how})", file=out)
    print(render_status(report, streams_off=scheduler.disabled, protocols=protocols), file=out)
    udp = [s.name for s in settings.servers if s.server_protocol == "UDP"]
    if udp:
        print(
            f"\nUDP destinations ({', '.join(udp)}): 'undelivered' means not yet sent; what was sent is not "
            "known to be delivered (UDP has no acknowledgement)",
            file=out,
        )
    if not report.exists:
        lost = _lost(report.exists, loc)
        print(f"{'error: ' if lost else ''}no queue database yet at {loc.database}", file=out)
        print(f"hint: {loc.not_found_hint()}", file=out)
        return ExitCode.UNEXPECTED if lost else ExitCode.OK
    return ExitCode.OK


def _queue_dir(settings: LocalSettings) -> Path:
    """The data_dir of the service that runs with this config (found as `status` finds it)."""
    return locate_queue(settings.config_path, settings.configuration.data_dir, None).data_dir


def quarantine_export(settings: LocalSettings, output: str | None, out: TextIO, err: TextIO) -> int:
    """Write every quarantined event as one JSON line (to `output`, created 0600, or to `out`)."""
    try:
        if output is None:
            n = _write_quarantine(settings, out)
        else:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                n = _write_quarantine(settings, f)
    except QueueError as exc:
        print(f"error: {exc}", file=err)
        return ExitCode.UNEXPECTED
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=err)
        return ExitCode.UNEXPECTED
    print(f"{n} quarantined events exported" + (f" to {output}" if output else ""), file=err)
    return ExitCode.OK


def _write_quarantine(settings: LocalSettings, f: TextIO) -> int:
    n = 0
    for q in read_quarantine(_queue_dir(settings)):
        f.write(json.dumps(export_row(q), ensure_ascii=False) + "\n")
        n += 1
    f.flush()
    return n


def quarantine_count(settings: LocalSettings, out: TextIO) -> int:
    """Print the number of quarantined events, per stream (and destination) and reason."""
    try:
        report = read_status(_queue_dir(settings))
    except QueueError as exc:
        print(f"error: {exc}", file=out)
        return ExitCode.UNEXPECTED
    print(f"{report.quarantined_total} quarantined events", file=out)
    for q in report.quarantined:
        where = q.key if q.destination is None else f"{q.key} -> {q.destination}"
        print(f"  {where:<38}{q.reason:<16}{q.count:>8}", file=out)
    return ExitCode.OK


TEST_EVENT_MARK = "SIEMCONN-TEST-MESSAGE"


async def send_test(settings: LocalSettings, out: TextIO) -> int:
    """Send one clearly marked test message to every server in its configured format."""
    _quiet_logging(_env_secret())
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
        # cef/leef map events per stream; the test message is no audit event, so it gets its own
        # header (product "siemconn", signature id "siemconn.send_test") and carries its JSON whole
        stream = "send_test" if server.format in ("cef", "leef") else "audit"
        message = format_message(payload, stream, server, now)
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
