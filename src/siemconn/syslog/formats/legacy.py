"""legacy (the default): the reference connector's line, byte for byte.

    <14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: {json}

An RFC 3339 send time to the second, in UTC, then the host (`hostname`, else the reference's fixed
``VECTRA-SYSLOG-CONNECTOR``, never this machine's name) and a colon, then the stored event JSON.
"""

from __future__ import annotations

from datetime import datetime

from siemconn.config import LEGACY_HOSTNAME, ServerConfig
from siemconn.syslog.formats.base import SyslogFormat, pri

__all__ = ["Legacy"]


class Legacy(SyslogFormat):
    """The reference connector's line; the header depends on the send time only."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        self._pri = pri(server)
        self._tail = f" {server.hostname or LEGACY_HOSTNAME}: "

    def header(self, stream: str, utc: datetime) -> str:
        return f"{self._pri}{utc:%Y-%m-%dT%H:%M:%S}Z{self._tail}"
