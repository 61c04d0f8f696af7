"""cef: ArcSight's Common Event Format behind an RFC 3164 header without a TAG.

    <14>Nov  2 00:18:01 host CEF:0|Vectra AI|RUX Detections|0.1.0|detection.x|X|5|rt=... externalId=...

The event is mapped to fields (siemconn.syslog.mapping) and written by `siemconn.syslog.cef`, which holds
the CEF text and its escaping; this module is the format around it. CEF escapes with a backslash, so a cut
never ends between a backslash and the character it escapes.
"""

from __future__ import annotations

from typing import ClassVar

from siemconn.config import ServerConfig
from siemconn.syslog.cef import CefEncoder, escape_value, render
from siemconn.syslog.formats.base import MappedFormat
from siemconn.syslog.mapping import Mapped

__all__ = ["Cef"]


class Cef(MappedFormat):
    """CEF for one server (`include_raw_event`: whether the full event JSON is carried, as ``cs6``)."""

    escapes: ClassVar[bool] = True

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        super().__init__(server, hostname)
        self._encoder = CefEncoder(server.include_raw_event)

    def body(self, payload: str | bytes, stream: str) -> str:
        return self._encoder.encode(payload, stream)

    def render(self, record: Mapped) -> str:
        return render(record)

    def field(self, key: str, json_text: str) -> str:
        return f" {key}={escape_value(json_text, True)}"
