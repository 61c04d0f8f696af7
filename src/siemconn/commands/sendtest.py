"""`siemconn send-test`: one clearly marked test message to every server, in its configured format and
framing. It never calls the API, so it needs config.json only."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import TextIO

from siemconn.commands.output import (
    CONNECT_TIMEOUT,
    UDP_NOTE,
    env_secrets,
    failure_reason,
    line,
    quiet_logging,
)
from siemconn.config import LocalSettings
from siemconn.errors import SiemconnError
from siemconn.events.encoder import encode_event
from siemconn.exitcodes import ExitCode
from siemconn.syslog.format import Formatter, frame
from siemconn.syslog.formats import MappedFormat
from siemconn.syslog.transport import open_transport

__all__ = ["TEST_EVENT_MARK", "send_test"]

TEST_EVENT_MARK = "SIEMCONN-TEST-MESSAGE"


async def send_test(settings: LocalSettings, out: TextIO) -> int:
    """Send one clearly marked test message to every server in its configured format."""
    quiet_logging(env_secrets())
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
        formatter = Formatter(server)
        # a mapped format (cef, leef) maps events per stream; the test message is no audit event, so it
        # gets its own header (product "siemconn", signature id "siemconn.send_test") and its JSON whole
        stream = "send_test" if isinstance(formatter.syntax, MappedFormat) else "audit"
        message = formatter.format(payload, stream, now)
        data = message if server.server_protocol == "UDP" else frame(message, server.framing)
        try:
            transport = await open_transport(server, settings.cert_dir, connect_timeout=CONNECT_TIMEOUT)
            try:
                await transport.write([data])
            finally:
                await transport.close()
        except (SiemconnError, OSError, TimeoutError) as exc:
            all_ok = False
            line(out, False, f"send-test {server.label}", failure_reason(exc, server))
            continue
        acked = " and acknowledged (rsp 200)" if server.server_protocol == "RELP" else ""
        line(
            out,
            True,
            f"send-test {server.label}",
            f"sent {len(data)} bytes ({server.format}){acked}; search your SIEM for "
            f"{json.dumps(TEST_EVENT_MARK)}",
        )
        if server.server_protocol == "UDP":
            print(f"       {server.name}: {UDP_NOTE}", file=out, flush=True)
    return ExitCode.OK if all_ok else ExitCode.UNEXPECTED
