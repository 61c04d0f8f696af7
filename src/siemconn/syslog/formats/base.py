"""What an output format is (`SyslogFormat`, and `MappedFormat` for the SIEM-native ones) and the header
parts formats share.

A format object is built once per server, by `siemconn.syslog.format.Formatter` from the registry
(`siemconn.syslog.formats.FORMATS`), so every constant part of its header (PRI, host, tag) is computed at
construction and nothing is looked up by name per event. The rest of the sink asks the object, never the
format's name:

- `header(stream, utc)`: everything before the body for a send time; `Formatter` caches it per stream
  and send time, so the header depends on nothing else (the constant-header fast path);
- `uses_event_time` and `event_header(payload, stream)`: a header from the event's own time instead
  (rfc5424 with `timestamp: "event"`), with the reason when that time is unusable;
- the kind: a plain `SyslogFormat` sends the stored event JSON as its body, byte for byte (legacy,
  rfc5424, rfc3164); a `MappedFormat` maps the event to fields (siemconn.syslog.mapping) and renders
  them (cef, leef), so it has no constant message prefix per event, a trimmed event gets the
  `siemconn_trimmed` marker as a field of its own (`field`), a heartbeat is a record it renders
  (`render`), and send-test's message gets its own header (stream `send_test`);
- `cut(message, limit)`: the oversize policy `truncate` (a mapped format's cut never splits a UTF-8
  sequence, nor, with `escapes`, an escape).

Header text is ASCII: every host, tag and app name goes through `sanitize_field`, except the legacy
format's host, which config.json restricts to printable ASCII.
"""

from __future__ import annotations

import re
import socket
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import ClassVar

from siemconn.config import ServerConfig
from siemconn.syslog.mapping import Mapped

__all__ = [
    "MappedFormat",
    "SyslogFormat",
    "bsd_timestamp",
    "default_hostname",
    "pri",
    "rfc3339",
    "safe_cut",
    "sanitize_field",
    "utf8",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def pri(server: ServerConfig) -> str:
    """The PRI part, ``<facility * 8 + severity>``."""
    return f"<{server.facility * 8 + server.severity}>"


def sanitize_field(value: str, max_len: int) -> str:
    """An RFC 5424 header field: PRINTUSASCII only (others become '_'), at most max_len, '-' if empty."""
    cleaned = _NOT_PRINTUSASCII.sub("_", value)[:max_len]
    return cleaned or "-"


def default_hostname() -> str:
    """This machine's name as an RFC 5424 HOSTNAME."""
    return sanitize_field(socket.gethostname(), 255)


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC timestamp with a Z: to the second, or with microseconds when there are any.

    The year always has four digits (strftime's %Y gives "1" for year 1 on glibc, which is not an RFC 5424
    TIMESTAMP)."""
    ts = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    text = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    if ts.microsecond:
        return f"{text}.{ts.microsecond:06d}Z"
    return text + "Z"


def bsd_timestamp(utc: datetime) -> str:
    """The RFC 3164 TIMESTAMP of a UTC time: ``Mmm dd hh:mm:ss``, the day padded with a space."""
    return f"{_MONTHS[utc.month - 1]} {utc.day:2d} {utc:%H:%M:%S}"


def utf8(text: str) -> bytes:
    """`text` as UTF-8. A lone surrogate (JSON can spell one, "\\ud800"; UTF-8 cannot) becomes U+FFFD
    instead of failing the whole batch; the raw event JSON, being ASCII, keeps it exactly."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def safe_cut(message: bytes, limit: int, *, escapes: bool) -> bytes:
    """`message` cut to at most `limit` bytes, not inside a UTF-8 sequence and, with `escapes`, not
    between a backslash and the character it escapes."""
    end = limit
    while end > 0 and (message[end] & 0xC0) == 0x80:  # message[end] starts the removed part
        end -= 1
    cut = message[:end]
    if escapes:
        trailing = len(cut) - len(cut.rstrip(b"\\"))
        if trailing % 2:
            cut = cut[:-1]
    return cut


class SyslogFormat(ABC):
    """One output format for one server whose body is the stored event JSON, unchanged.

    A format implements `__init__(server, hostname)` and `header`; the rest has defaults."""

    uses_event_time: bool = False
    """True: `event_header` gives the header from the event's own time (the payload is read per event)."""

    @abstractmethod
    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        """The constant parts for `server`, computed once; `hostname` is the caller's default host (None:
        this machine's name), for formats whose header names one."""

    @abstractmethod
    def header(self, stream: str, utc: datetime) -> str:
        """Everything before the body of a message of `stream` sent at `utc` (aware, UTC), ASCII."""

    def event_header(self, payload: str | bytes, stream: str) -> tuple[str | None, str | None]:
        """(the header with the event's own time, None), or (None, why not) when the event's time is
        unusable, or (None, None) when it has none: the send-time header is used then. Called only when
        `uses_event_time` is set."""
        return None, None

    @classmethod
    def cut(cls, message: bytes, limit: int) -> bytes:
        """`message` cut to at most `limit` bytes (the oversize policy `truncate`)."""
        return message[:limit]


class MappedFormat(SyslogFormat):
    """A SIEM-native format: the event is mapped to fields (siemconn.syslog.mapping) and `body` renders
    them. The header is RFC 3164's without a TAG, ``<PRI>Mmm dd hh:mm:ss host ``, as ArcSight, Sentinel
    and QRadar expect in front of "CEF:" and "LEEF:"."""

    escapes: ClassVar[bool] = False
    """True: a backslash escapes the next character, so a cut never ends between the two."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        self._pri = pri(server)
        self._tail = f" {sanitize_field(server.hostname or hostname or default_hostname(), 255)} "

    def header(self, stream: str, utc: datetime) -> str:
        return f"{self._pri}{bsd_timestamp(utc)}{self._tail}"

    @abstractmethod
    def body(self, payload: str | bytes, stream: str) -> str:
        """The body of one stored event payload of `stream` (mapped, escaped)."""

    @abstractmethod
    def render(self, record: Mapped) -> str:
        """The body of a record that is no stored event (the in-band heartbeat)."""

    @abstractmethod
    def field(self, key: str, json_text: str) -> str:
        """The text that appends one more field, `key` with the JSON text `json_text` as its value, to a
        body (the `siemconn_trimmed` marker of a trimmed event)."""

    @classmethod
    def cut(cls, message: bytes, limit: int) -> bytes:
        """`message` cut to at most `limit` bytes, never inside a UTF-8 sequence or an escape; the raw
        event JSON, which mapped formats put last, goes first."""
        return safe_cut(message, limit, escapes=cls.escapes)
