"""Pure formatting: one event in, message bytes out, for a server's format, plus framing.

The payload of every format is `siemconn.events.encoder.encode_event(event)`, i.e. `json.dumps(event)` with Python's defaults
(separators ", " and ": ", ASCII-escaped). That is the reference connector's byte shape, and since
`json.dumps` escapes every control character, a payload never holds a raw newline: LF framing is safe.

Shapes (no framing; see `frame`), one module each in siemconn.syslog.formats:

- legacy (default)   ``<14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: {json}``
- rfc5424            ``<14>1 2023-11-02T00:18:01.123456Z host siemconn - detections - {json}``
- rfc3164            ``<14>Nov  2 00:18:01 host siemconn: {json}``
- cef                ``<14>Nov  2 00:18:01 host CEF:0|Vectra AI|RUX Detections|0.1.0|detection.x|X|5|rt=...``
- leef               ``<14>Nov  2 00:18:01 host LEEF:2.0|Vectra AI|RUX Audit|0.1.0|audit.user.login|x09|...``

cef and leef are not JSON: the event is mapped to fields (siemconn.syslog.mapping, docs/formats.md) and
escaped per each format's spec (cef.py, leef.py).

`Formatter` resolves the server's format in the registry (`siemconn.syslog.formats.FORMATS`) once, when it
is built, and asks the format object for everything format-specific; it never branches on a format's
name. All send times are UTC. The header is cached per stream for one `now`, so a batch formatted with one
`now` costs one header build per stream plus one bytes concatenation per event. Except for a header from
the event's own time (rfc5424 with `timestamp: "event"`) and the mapped formats (cef and leef, whose whole
message is built from the payload), the header does not depend on the payload:
`Formatter.constant_header(stream, now)` returns it as bytes, and the message is that header followed by
the payload bytes as stored in the queue (`Formatter.format_bytes` is the per-event form, and the only
one for event timestamps, cef and leef). Both are byte-identical to `Formatter.format`.

UDP (RFC 5426): one message per datagram and NO framing: the datagram boundary is the frame, and
rsyslog drops a trailing LF anyway, so adding one would only change what a stricter receiver stores.
Datagrams larger than `server.max_message_size` (default 65507, the largest IPv4 UDP payload) cannot
be sent; the oversize policy applies (siemconn.syslog.budget has the policies for every transport, `trim`
included; `fit_datagram` is its `truncate` and `drop` for one datagram):

- "truncate" (default): cut the message to the limit. The SIEM still sees the header, the stream and
  the first ~64 KiB of the event (its id comes first in Vectra events), and the loss is counted in
  `events_truncated`: a visible, partial event beats a silently missing one.
- "drop": the event is not sent at all; it is counted and logged with its id, for receivers that
  reject invalid JSON anyway.

  For cef and leef the cut never splits a UTF-8 sequence, nor (cef) leaves half an escape: the last
  value is shortened, and the raw event JSON, which those formats put last, goes first (the format's
  `cut`).

The header helpers (`rfc3339`, `sanitize_field`, `default_hostname`, `utf8`, `safe_cut`) live in
siemconn.syslog.formats.base and the RFC 5424 event time (`parse_event_timestamp`) in its format module;
they are exported here too, where they were defined before the formats had modules of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

from siemconn.config import ServerConfig
from siemconn.syslog.formats import FORMATS, FormatClass, MappedFormat, SyslogFormat
from siemconn.syslog.formats.base import default_hostname, rfc3339, safe_cut, sanitize_field, utf8
from siemconn.syslog.formats.rfc5424 import parse_event_timestamp
from siemconn.syslog.mapping import Mapped

__all__ = [
    "Formatter",
    "Framing",
    "default_hostname",
    "fit_datagram",
    "format_message",
    "frame",
    "parse_event_timestamp",
    "rfc3339",
    "safe_cut",
    "sanitize_field",
    "utf8",
]

Framing = Literal["lf", "octet-counting"]


def frame(message: bytes, framing: str) -> bytes:
    """Frame one message for a stream transport: "lf" appends b"\\n", "octet-counting" is RFC 6587."""
    if framing == "lf":
        return message + b"\n"
    if framing == "octet-counting":
        return b"%d %s" % (len(message), message)
    raise ValueError(f"unknown framing {framing!r}; expected 'lf' or 'octet-counting'")


def fit_datagram(message: bytes, server: ServerConfig) -> bytes | None:
    """Apply the UDP oversize policy `truncate` or `drop` (siemconn.syslog.budget has every policy): the
    message, the message cut to the budget (65507 by default) by its format's rule, or None (drop)."""
    limit = server.message_budget or len(message)
    if len(message) <= limit:
        return message
    if server.oversize_policy == "drop":
        return None
    return FORMATS[server.format].cut(message, limit)


class Formatter:
    """Formats messages for one server. Its format object (`syntax`) is resolved once, here, and so are
    the per-event paths: nothing is looked up by format name per event.

    `formats` is the registry to resolve `server.format` in (`FORMATS`; a test passes one with a format
    of its own). `fallbacks` and `fallback_detail` count the events sent with the send time because their
    own time was unusable (read by the writer, per batch)."""

    __slots__ = (
        "server",
        "syntax",
        "fallbacks",
        "fallback_detail",
        "_hostname",
        "_formats",
        "_body",
        "_event_header",
        "_constant",
        "_headers_now",
        "_headers",
    )

    def __init__(
        self,
        server: ServerConfig,
        *,
        hostname: str | None = None,
        formats: Mapping[str, FormatClass] = FORMATS,
    ) -> None:
        self.server = server
        self.syntax: SyslogFormat = formats[server.format](server, hostname)
        self._hostname = hostname
        self._formats = formats
        # the two per-event paths, as bound methods (None: the format has no such path)
        self._body: Callable[[str | bytes, str], str] | None = (
            self.syntax.body if isinstance(self.syntax, MappedFormat) else None
        )
        self._event_header: Callable[[str | bytes, str], tuple[str | None, str | None]] | None = (
            self.syntax.event_header if self.syntax.uses_event_time else None
        )
        self._constant = self._body is None and self._event_header is None
        self._headers_now: datetime | None = None
        self._headers: dict[str, bytes] = {}
        self.fallbacks = 0
        self.fallback_detail = ""

    def for_server(self, server: ServerConfig) -> Formatter:
        """A formatter for `server` (a variant of this one's) with the same default host and registry."""
        return Formatter(server, hostname=self._hostname, formats=self._formats)

    def _send_header(self, stream: str, now: datetime) -> bytes:
        """Everything before the body, with the send time `now`; cached per stream for one `now`."""
        if not (now is self._headers_now or now == self._headers_now):
            self._headers_now = now
            self._headers = {}
        header = self._headers.get(stream)
        if header is None:
            utc = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)
            header = self._headers[stream] = self.syntax.header(stream, utc).encode()
        return header

    def _event_head(
        self,
        event_header: Callable[[str | bytes, str], tuple[str | None, str | None]],
        payload: str | bytes,
        stream: str,
    ) -> str | None:
        """The header from the event's own time, or None (counted as a fallback when it was unusable)."""
        head, problem = event_header(payload, stream)
        if problem is not None:
            self.fallbacks += 1
            self.fallback_detail = problem
        return head

    def format(self, payload: str, stream: str, now: datetime) -> bytes:
        """One message, without framing."""
        body = self._body
        if body is not None:
            return self._send_header(stream, now) + utf8(body(payload, stream))
        event_header = self._event_header
        if event_header is not None:
            head = self._event_head(event_header, payload, stream)
            if head is not None:
                return (head + payload).encode()
        return self._send_header(stream, now) + payload.encode()

    def format_record(self, record: Mapped, stream: str, now: datetime) -> bytes:
        """A mapped format's message for a record that is no stored event (the in-band heartbeat)."""
        assert isinstance(self.syntax, MappedFormat), "records are the mapped formats' (cef, leef)"
        return self._send_header(stream, now) + utf8(self.syntax.render(record))

    def constant_header(self, stream: str, now: datetime) -> bytes | None:
        """The bytes before the payload shared by every message of `stream` sent at `now`, or None when
        the message depends on the payload beyond appending it (a header from the event's time, a mapped
        format).

        For any payload, `constant_header(stream, now) + payload.encode()` is `format(payload, stream, now)`.
        """
        return self._send_header(stream, now) if self._constant else None

    def format_bytes(self, payload: bytes, stream: str, now: datetime) -> bytes:
        """`format` for a payload given as UTF-8 bytes: the same message, without decoding the payload
        (except for the mapped formats, which map the decoded event)."""
        body = self._body
        if body is not None:
            return self._send_header(stream, now) + utf8(body(payload, stream))
        event_header = self._event_header
        if event_header is not None:
            head = self._event_head(event_header, payload, stream)
            if head is not None:
                return head.encode() + payload
        return self._send_header(stream, now) + payload


def format_message(payload: str, stream: str, server: ServerConfig, now: datetime) -> bytes:
    """One message for `server`, without framing (convenience form; use `Formatter` in loops)."""
    return Formatter(server).format(payload, stream, now)
