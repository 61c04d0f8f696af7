"""`siemconn check`: answers each problem in one line within seconds. It first opens a plain TCP
connection (to the API, and to a TLS syslog server before its handshake), so a refused port, a silent
firewall and a peer that does not speak TLS are told apart instead of ending in a retry loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TextIO

import httpx

from siemconn.commands.output import (
    CONNECT_TIMEOUT,
    UDP_NOTE,
    failure_reason,
    line,
    quiet_logging,
)
from siemconn.config import LocalSettings, ServerConfig, Settings
from siemconn.errors import QueueError, RuxAuthError, RuxError, RuxPermissionError, SiemconnError
from siemconn.exitcodes import ExitCode
from siemconn.fileperms import permission_warnings
from siemconn.ops.service_view import as_seen_by_service
from siemconn.queue import read_status
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import stream_specs
from siemconn.syslog.budget import BUDGET_HINT
from siemconn.syslog.transport import open_transport

__all__ = ["API_CONNECT_TIMEOUT", "TLS_ANSWER_TIMEOUT", "check_server", "run_checks"]

API_CONNECT_TIMEOUT = 5.0  # `check`'s TCP probe of the API: a clear answer within seconds
TLS_ANSWER_TIMEOUT = 5.0  # a TLS server answers a ClientHello at once; silence means it speaks no TLS
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


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
        return False, failure_reason(exc, server)
    await transport.close()
    if server.server_protocol == "RELP":
        return True, "RELP session opened" + (" over TLS" if server.tls else "")
    return True, "TLS handshake completed" if server.server_protocol == "TLS" else "TCP connection opened"


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
                line(
                    out,
                    False,
                    f"stream {spec.key}",
                    f"HTTP 403: the API client lacks the {spec.role} role; add it in the Vectra UI "
                    f'(Manage > API Clients), or turn the stream off with "scheduler": {{"{stream}": null}} '
                    f"({exc})",
                )
                continue
            except RuxAuthError as exc:
                line(out, False, f"stream {spec.key}", str(exc))
                return False
            except RuxError as exc:
                all_ok = False
                line(out, False, f"stream {spec.key}", str(exc))
                continue
            line(out, True, f"stream {spec.key}", detail)
    for stream in scheduler.disabled:
        line(out, True, f"stream {stream}", "off (not polled)")
    return all_ok


async def run_checks(settings: Settings, out: TextIO) -> int:
    """Validate (done by the caller), obtain a RUX token, try every enabled stream once, and connect to
    every syslog server."""
    # the report says what failed, one line each: the client's retry/backoff log lines would only repeat it
    quiet_logging([settings.credentials.client_secret.get_secret_value()], level="CRITICAL")
    line(out, True, "configuration", f"{settings.config_path.absolute()} is valid")
    settings, record = as_seen_by_service(settings)  # the running service's paths, if it runs
    if record is not None:
        print(
            f"info   running service: pid {record.pid}, working directory {record.cwd}; relative paths are "
            "checked from there (its runtime record)",
            file=out,
        )
    all_ok, detail = _check_data_dir(settings)
    line(out, all_ok, "data directory", detail)
    for w in permission_warnings(settings):  # a warning: `check` still passes
        print(f"warn   {w.what}: {w.path} is {w.problem} (mode {w.mode:04o}); fix: {w.fix}", file=out)
    client, detail = await _check_api(settings)
    line(out, client is not None, "Vectra API", detail)
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
        line(out, ok, f"syslog server {server.label}", f"{detail}; receives {streams}")
        if server.server_protocol == "UDP":
            print(f"       {server.name}: {UDP_NOTE}", file=out, flush=True)
        elif server.message_budget is None:
            print(f"       {server.name}: {BUDGET_HINT}", file=out, flush=True)
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
