"""rfc5424: the IETF syslog line, then the stored event JSON as MSG.

    <14>1 2023-11-02T00:18:01.123456Z host siemconn - detections - {json}

TIMESTAMP is the send time (RFC 3339, UTC, microseconds when there are any), or with `timestamp: "event"`
the event's own `event_timestamp` read by `siemconn.events.eventtime` (the one rule for an event's time);
an event whose time is unusable is sent with the send time and counted by the `Formatter`. HOSTNAME is
`hostname`, else the caller's default, else this machine's name; APP-NAME is `app_name`; PROCID is
``-``; MSGID is the stream before its first dot (``entity_scoring``); STRUCTURED-DATA is
`structured_data`, else ``-``. Every header field is PRINTUSASCII (`sanitize_field`).
"""

from __future__ import annotations

from datetime import datetime

from siemconn.config import ServerConfig
from siemconn.events.eventtime import event_time
from siemconn.syslog.formats.base import SyslogFormat, default_hostname, pri, rfc3339, sanitize_field

__all__ = ["Rfc5424", "parse_event_timestamp"]


def parse_event_timestamp(payload: str | bytes) -> str | None:
    """The event's own `event_timestamp` as its RFC 5424 TIMESTAMP (RFC 3339 UTC), or None if missing or
    unusable. `payload` is the JSON text, as `str` or as UTF-8 bytes."""
    ts = event_time(payload)[0]
    return None if ts is None else rfc3339(ts)


class Rfc5424(SyslogFormat):
    """RFC 5424; the header depends on the send time and the stream (MSGID), or on the event's time."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        self._pri = pri(server)
        host = sanitize_field(server.hostname or hostname or default_hostname(), 255)
        app = sanitize_field(server.app_name, 48)
        self._tail = f" {host} {app} - "  # HOSTNAME APP-NAME PROCID
        self._sd = server.structured_data or "-"
        self._msgids: dict[str, str] = {}
        self.uses_event_time = server.timestamp == "event"

    def _rest(self, stream: str) -> str:
        """The header after TIMESTAMP: HOSTNAME, APP-NAME, PROCID, MSGID and STRUCTURED-DATA."""
        msgid = self._msgids.get(stream)
        if msgid is None:
            msgid = self._msgids[stream] = sanitize_field(stream.split(".")[0], 32)
        return f"{self._tail}{msgid} {self._sd} "

    def header(self, stream: str, utc: datetime) -> str:
        return f"{self._pri}1 {rfc3339(utc)}{self._rest(stream)}"

    def event_header(self, payload: str | bytes, stream: str) -> tuple[str | None, str | None]:
        ts, problem = event_time(payload)
        if ts is None:
            return None, problem
        return f"{self._pri}1 {rfc3339(ts)}{self._rest(stream)}", None
