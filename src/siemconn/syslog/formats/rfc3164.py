"""rfc3164: the BSD syslog line with a TAG, then the stored event JSON.

    <14>Nov  2 00:18:01 host siemconn: {json}

TIMESTAMP is the send time in UTC (RFC 3164 has no zone and no year); HOSTNAME is `hostname`, else the
caller's default, else this machine's name; TAG is `app_name` with everything but ASCII letters and digits
removed, at most 32 characters (RFC 3164's rule), ``siemconn`` when nothing is left.
"""

from __future__ import annotations

import re
from datetime import datetime

from siemconn.config import ServerConfig
from siemconn.syslog.formats.base import SyslogFormat, bsd_timestamp, default_hostname, pri, sanitize_field

__all__ = ["Rfc3164"]

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


class Rfc3164(SyslogFormat):
    """RFC 3164 with a TAG; the header depends on the send time only."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        self._pri = pri(server)
        host = sanitize_field(server.hostname or hostname or default_hostname(), 255)
        tag = _NOT_ALNUM.sub("", server.app_name)[:32] or "siemconn"
        self._tail = f" {host} {tag}: "

    def header(self, stream: str, utc: datetime) -> str:
        return f"{self._pri}{bsd_timestamp(utc)}{self._tail}"
