"""Pure formatting: one event in, message bytes out (legacy, RFC 5424, RFC 3164), plus framing.

The payload of every format is `siemconn.events.encoder.encode_event(event)`, i.e. `json.dumps(event)` with Python's defaults
(separators ", " and ": ", ASCII-escaped). That is the reference connector's byte shape, and since
`json.dumps` escapes every control character, a payload never holds a raw newline: LF framing is safe.

Shapes (no framing; see `frame`):

- legacy (default)   ``<14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: {json}``
- rfc5424            ``<14>1 2023-11-02T00:18:01.123456Z host siemconn - detections - {json}``
- rfc3164            ``<14>Nov  2 00:18:01 host siemconn: {json}``
- cef                ``<14>Nov  2 00:18:01 host CEF:0|Vectra AI|RUX Detections|0.1.0|detection.x|X|5|rt=...``
- leef               ``<14>Nov  2 00:18:01 host LEEF:2.0|Vectra AI|RUX Audit|0.1.0|audit.user.login|x09|...``

cef and leef are not JSON: the event is mapped to fields (siemconn.syslog.mapping, docs/formats.md) and
escaped per each format's spec (cef.py, leef.py). Their syslog header is the RFC 3164 shape without a
TAG, as ArcSight, Sentinel and QRadar expect in front of "CEF:" and "LEEF:".

All send times are UTC. Per-server constant parts are precomputed by `Formatter`, and the header is
cached per distinct `now`, so a batch formatted with one `now` costs one header build plus one bytes
concatenation per event. Except for rfc5424 with `timestamp: "event"`, cef and leef (whose whole message
is built from the payload), the header does not depend on the payload:
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
  value is shortened, and the raw event JSON, which those formats put last, goes first.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from typing import Literal

from siemconn.config import LEGACY_HOSTNAME, ServerConfig
from siemconn.syslog.cef import CefEncoder
from siemconn.syslog.leef import LeefEncoder

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

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def frame(message: bytes, framing: str) -> bytes:
    """Frame one message for a stream transport: "lf" appends b"\\n", "octet-counting" is RFC 6587."""
    if framing == "lf":
        return message + b"\n"
    if framing == "octet-counting":
        return b"%d %s" % (len(message), message)
    raise ValueError(f"unknown framing {framing!r}; expected 'lf' or 'octet-counting'")


def utf8(text: str) -> bytes:
    """`text` as UTF-8. A lone surrogate (JSON can spell one, "\\ud800"; UTF-8 cannot) becomes U+FFFD
    instead of failing the whole batch; the raw event JSON, being ASCII, keeps it exactly."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def fit_datagram(message: bytes, server: ServerConfig) -> bytes | None:
    """Apply the UDP oversize policy `truncate` or `drop` (siemconn.syslog.budget has every policy): the
    message, the message cut to the budget (65507 by default), or None (drop)."""
    limit = server.message_budget or len(message)
    if len(message) <= limit:
        return message
    if server.oversize_policy == "drop":
        return None
    if server.format in ("cef", "leef"):
        return safe_cut(message, limit, escapes=server.format == "cef")
    return message[:limit]


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


def sanitize_field(value: str, max_len: int) -> str:
    """An RFC 5424 header field: PRINTUSASCII only (others become '_'), at most max_len, '-' if empty."""
    cleaned = _NOT_PRINTUSASCII.sub("_", value)[:max_len]
    return cleaned or "-"


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC timestamp with a Z: to the second, or with microseconds when there are any.

    The year always has four digits (strftime's %Y gives "1" for year 1 on glibc, which is not an RFC 5424
    TIMESTAMP)."""
    ts = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    text = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    if ts.microsecond:
        return f"{text}.{ts.microsecond:06d}Z"
    return text + "Z"


def parse_event_timestamp(payload: str | bytes) -> str | None:
    """The event's own `event_timestamp` as RFC 3339 UTC, or None if missing or unusable.

    `payload` is the JSON text, as `str` or as UTF-8 bytes."""
    return event_time(payload)[0]


def event_time(payload: str | bytes) -> tuple[str | None, str | None]:
    """(`event_timestamp` as RFC 3339 UTC, None), or (None, why it is unusable), or (None, None) when the
    event has none. Never raises: a date that cannot be shown in UTC (year 1 with a positive offset, year
    9999 with a negative one: OverflowError), text that is not a date, a payload that does not parse, all
    give the reason, and the caller sends the event with its send time instead (the payload is intact)."""
    try:
        # json.loads(bytes) would detect the encoding first; stored payloads are UTF-8 (ASCII in fact)
        event = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
        raw = event.get("event_timestamp") if isinstance(event, dict) else None
        if raw is None:
            return None, None
        if not isinstance(raw, str) or not raw:
            return None, f"event_timestamp {str(raw)[:64]!r} is not a date"
        return rfc3339(datetime.fromisoformat(raw)), None
    except Exception as exc:  # any failure means "use the send time", never a lost or stuck event
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"


def default_hostname() -> str:
    """This machine's name as an RFC 5424 HOSTNAME."""
    return sanitize_field(socket.gethostname(), 255)


class Formatter:
    """Formats messages for one server; constant header parts are computed once, at construction."""

    __slots__ = (
        "server",
        "_fmt",
        "_pri",
        "_host",
        "_tail",
        "_event_ts",
        "_last_now",
        "_last_prefix",
        "_msgids",
        "_sd",
        "_headers_now",
        "_headers",
        "_siem",
        "fallbacks",
        "fallback_detail",
    )

    def __init__(self, server: ServerConfig, *, hostname: str | None = None) -> None:
        self.server = server
        self._fmt = server.format
        self._pri = f"<{server.facility * 8 + server.severity}>"
        self._event_ts = server.format == "rfc5424" and server.timestamp == "event"
        self._last_now: datetime | None = None
        self._last_prefix = ""
        self._msgids: dict[str, str] = {}
        self._sd = server.structured_data or "-"
        self._headers_now: datetime | None = None
        self._headers: dict[str, bytes] = {}
        self._siem: CefEncoder | LeefEncoder | None = None
        # events sent with the send time because their event_timestamp was unusable (read by the pool)
        self.fallbacks = 0
        self.fallback_detail = ""
        if server.format == "legacy":
            self._host = server.hostname or LEGACY_HOSTNAME
            self._tail = f" {self._host}: "
        elif server.format == "rfc5424":
            self._host = sanitize_field(server.hostname or hostname or default_hostname(), 255)
            app = sanitize_field(server.app_name, 48)
            procid = "-"
            self._tail = f" {self._host} {app} {procid} "
        elif server.format in ("cef", "leef"):
            # RFC 3164 header without a TAG: "<PRI>Mmm dd hh:mm:ss host CEF:0|..." (built by _prefix)
            self._host = sanitize_field(server.hostname or hostname or default_hostname(), 255)
            self._tail = f" {self._host} "
            if server.format == "cef":
                self._siem = CefEncoder(server.include_raw_event)
            else:
                self._siem = LeefEncoder(server.leef_delimiter, server.include_raw_event)
        else:  # rfc3164
            self._host = sanitize_field(server.hostname or hostname or default_hostname(), 255)
            tag = _NOT_ALNUM.sub("", server.app_name)[:32] or "siemconn"
            self._tail = f" {self._host} {tag}: "

    def _prefix(self, now: datetime) -> str:
        """The header up to (legacy, rfc3164, cef, leef) or up to and including the timestamp (rfc5424),
        cached."""
        if now is self._last_now or now == self._last_now:
            return self._last_prefix
        utc = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)
        if self._fmt == "legacy":
            prefix = f"{self._pri}{utc:%Y-%m-%dT%H:%M:%S}Z{self._tail}"
        elif self._fmt == "rfc5424":
            prefix = f"{self._pri}1 {rfc3339(utc)}"
        else:
            prefix = f"{self._pri}{_MONTHS[utc.month - 1]} {utc.day:2d} {utc:%H:%M:%S}{self._tail}"
        self._last_now = now
        self._last_prefix = prefix
        return prefix

    def siem_header(self, now: datetime) -> str:
        """The syslog header in front of "CEF:" or "LEEF:" (cef and leef servers), for a message built
        from a mapped record rather than a stored event (the in-band heartbeat)."""
        return self._prefix(now)

    def _msgid(self, stream: str) -> str:
        msgid = self._msgids.get(stream)
        if msgid is None:
            msgid = self._msgids[stream] = sanitize_field(stream.split(".")[0], 32)
        return msgid

    def format(self, payload: str, stream: str, now: datetime) -> bytes:
        """One message, without framing."""
        if self._siem is not None:
            return utf8(self._prefix(now) + self._siem.encode(payload, stream))
        if self._fmt != "rfc5424":
            return (self._prefix(now) + payload).encode()
        sd = self._sd
        if self._event_ts:
            ts = self._event_time(payload)
            if ts is not None:
                return f"{self._pri}1 {ts}{self._tail}{self._msgid(stream)} {sd} {payload}".encode()
        return f"{self._prefix(now)}{self._tail}{self._msgid(stream)} {sd} {payload}".encode()

    def _event_time(self, payload: str | bytes) -> str | None:
        ts, problem = event_time(payload)
        if problem is not None:
            self.fallbacks += 1
            self.fallback_detail = problem
        return ts

    def _send_header(self, stream: str, now: datetime) -> bytes:
        """Everything before the payload, with the send time `now`; cached per stream for one `now`."""
        if not (now is self._headers_now or now == self._headers_now):
            self._headers_now = now
            self._headers = {}
        header = self._headers.get(stream)
        if header is None:
            if self._fmt != "rfc5424":
                text = self._prefix(now)
            else:
                text = f"{self._prefix(now)}{self._tail}{self._msgid(stream)} {self._sd} "
            header = self._headers[stream] = text.encode()
        return header

    def constant_header(self, stream: str, now: datetime) -> bytes | None:
        """The bytes before the payload shared by every message of `stream` sent at `now`, or None when
        the header depends on the payload (rfc5424 with `timestamp: "event"`).

        For any payload, `constant_header(stream, now) + payload.encode()` is `format(payload, stream, now)`.
        """
        if self._event_ts or self._siem is not None:
            return None
        return self._send_header(stream, now)

    def format_bytes(self, payload: bytes, stream: str, now: datetime) -> bytes:
        """`format` for a payload given as UTF-8 bytes: the same message, without decoding the payload
        (except for cef and leef, which map the decoded event)."""
        if self._siem is not None:
            return utf8(self._prefix(now) + self._siem.encode(payload, stream))
        if self._event_ts:
            ts = self._event_time(payload)
            if ts is not None:
                return f"{self._pri}1 {ts}{self._tail}{self._msgid(stream)} {self._sd} ".encode() + payload
        return self._send_header(stream, now) + payload


def format_message(payload: str, stream: str, server: ServerConfig, now: datetime) -> bytes:
    """One message for `server`, without framing (convenience form; use `Formatter` in loops)."""
    return Formatter(server).format(payload, stream, now)
