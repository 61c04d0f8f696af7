"""leef: IBM QRadar's LEEF 2.0 behind an RFC 3164 header without a TAG.

    <14>Nov  2 00:18:01 host LEEF:2.0|Vectra AI|RUX Audit|0.1.0|audit.user.login|x09|devTime=...

The event is mapped to fields (siemconn.syslog.mapping) and written by `siemconn.syslog.leef`, which holds
the LEEF text and keeps the server's `leef_delimiter` out of every value; this module is the format around
it. LEEF has no escape sequence, so a cut only has to keep UTF-8 sequences whole.
"""

from __future__ import annotations

from typing import ClassVar

from siemconn.config import ServerConfig
from siemconn.syslog.formats.base import MappedFormat
from siemconn.syslog.leef import LeefEncoder
from siemconn.syslog.mapping import Mapped

__all__ = ["Leef"]


class Leef(MappedFormat):
    """LEEF 2.0 for one server: its delimiter and whether the full event JSON is carried."""

    escapes: ClassVar[bool] = False

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        super().__init__(server, hostname)
        self._encoder = LeefEncoder(server.leef_delimiter, server.include_raw_event)

    def body(self, payload: str | bytes, stream: str) -> str:
        return self._encoder.encode(payload, stream)

    def render(self, record: Mapped) -> str:
        return self._encoder.render(record)

    def field(self, key: str, json_text: str) -> str:
        return f"{self._encoder.delimiter}{key}={self._encoder.value(json_text, True)}"
