"""The in-band heartbeat: a small status message on a syslog server's own connection, in its own format.

A server with `heartbeat_seconds: N` gets one message every N seconds carrying siemconn's version and host,
each of its streams' last successful poll and lag, its backlog and oldest undelivered age, the events
delivered to it since the previous heartbeat, and its quarantined and trimmed counts, so that the SIEM can
alert when the connector goes quiet or lags (docs/heartbeat.md has the shapes and the searches). This is not
siemconn.ops.heartbeat, the local file the container health check reads.

Invariants (the reasons are in docs/heartbeat.md):

- A heartbeat is built from the state at the moment it is sent and written by the server's writer between
  two batches, as a write of its own: never while a batch is unacknowledged on the wire, so the acked
  delivery of events (RELP transaction numbers, the TCP ack wait and settle) is the same as without it.
- It is never stored in the queue, never replayed, never retried. While the server is not connected none is
  built; a heartbeat whose write fails is gone, and the failure is handled like a failed batch write.
- After an outage at most one heartbeat is due: the schedule restarts from the send time, it never catches
  up, so a server that comes back gets no burst of old heartbeats.
- `delivered_since_last` counts the events acknowledged (UDP: sent) since the last heartbeat that was
  written; a heartbeat that fails does not reset it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from siemconn import __version__
from siemconn.config import ServerConfig
from siemconn.syslog.format import Formatter, frame
from siemconn.syslog.formats import MappedFormat
from siemconn.syslog.formats.base import rfc3339, sanitize_field
from siemconn.syslog.mapping import Field, Mapped

__all__ = [
    "HEARTBEAT_KEY",
    "HEARTBEAT_NAME",
    "HEARTBEAT_PRODUCT",
    "HEARTBEAT_SIGNATURE",
    "HEARTBEAT_STREAM",
    "OVERSIZE_REASON",
    "HeartbeatFacts",
    "HeartbeatSchedule",
    "HeartbeatSource",
    "QueueFigures",
    "StreamLag",
    "default_host",
    "gather_facts",
    "heartbeat_frame",
    "heartbeat_json",
    "heartbeat_mapped",
    "heartbeat_message",
    "heartbeat_wire",
    "quarantine_figures",
    "stream_lags",
]

HEARTBEAT_KEY: Final = "siemconn_heartbeat"  # the JSON formats' one top-level key
HEARTBEAT_STREAM: Final = "heartbeat"  # RFC 5424 MSGID (events have their stream there)
HEARTBEAT_SIGNATURE: Final = "siemconn:heartbeat"  # CEF Device Event Class ID, LEEF EventID
HEARTBEAT_PRODUCT: Final = "siemconn"
HEARTBEAT_NAME: Final = "siemconn heartbeat"
HEARTBEAT_SEVERITY: Final = 1
# the quarantine reason of events kept locally because they exceeded max_message_size (trimmed or dropped)
OVERSIZE_REASON: Final = "oversize"


class QueueFigures(Protocol):
    """The part of the writer pool's queue contract a heartbeat reads (siemconn.syslog.contracts.QueueLike)."""

    async def depth(self, destination: str) -> int: ...
    async def oldest_age(self, destination: str) -> float | None: ...


class HeartbeatSource(Protocol):
    """What a heartbeat reads besides the queue contract (siemconn.queue.DurableQueue implements it)."""

    def last_polls(self) -> dict[str, float]:
        """Unix time of the last successful poll per stream key."""
        ...

    async def quarantine_counts(self) -> dict[tuple[str, str | None, str], int]:
        """Quarantined events per (stream key, destination, reason)."""
        ...


@dataclass(frozen=True, slots=True)
class StreamLag:
    """One stream key: its last successful poll (unix time) and the seconds since then (None: never)."""

    key: str
    last_poll: float | None
    lag_seconds: float | None


@dataclass(frozen=True, slots=True)
class HeartbeatFacts:
    """Everything one heartbeat says, gathered when it is sent."""

    server: str
    host: str
    time: datetime  # the send time, UTC
    interval_seconds: int
    streams: tuple[StreamLag, ...]
    backlog: int  # undelivered events of this server
    oldest_undelivered_seconds: float  # 0 when the backlog is empty
    delivered_since_last: int
    quarantined: int  # events of this server's streams in quarantine, oversize aside
    trimmed: int  # events of this server kept locally as oversize (trimmed or dropped on the wire)
    version: str = __version__
    detail: bool = True  # False: the per-stream detail is left out (to fit max_message_size)

    @property
    def max_lag_seconds(self) -> float | None:
        """The largest stream lag, or None when no stream of this server was polled yet."""
        lags = [s.lag_seconds for s in self.streams if s.lag_seconds is not None]
        return max(lags) if lags else None


def _stream_of(key: str) -> str:
    return key.partition(".")[0]


def stream_lags(polls: Mapping[str, float], streams: Collection[str], now: float) -> tuple[StreamLag, ...]:
    """The lag of every stream key of `streams` (the server's enabled streams), in `streams` order; a
    stream never polled is listed with None."""
    out: list[StreamLag] = []
    for stream in streams:
        keys = sorted(k for k in polls if _stream_of(k) == stream)
        if not keys:
            out.append(StreamLag(stream, None, None))
        for key in keys:
            at = polls[key]
            out.append(StreamLag(key, at, round(max(0.0, now - at), 1)))
    return tuple(out)


def quarantine_figures(
    counts: Mapping[tuple[str, str | None, str], int], server: ServerConfig
) -> tuple[int, int]:
    """(quarantined, trimmed) for `server` from the quarantine's counts: rows of its own (its formatter or
    its size budget set them aside) and source-side rows of the streams it takes."""
    quarantined = trimmed = 0
    for (key, destination, reason), n in counts.items():
        if destination == server.name and reason == OVERSIZE_REASON:
            trimmed += n
        elif destination == server.name or (destination is None and server.takes(_stream_of(key))):
            quarantined += n
    return quarantined, trimmed


def _utc(at: float) -> str:
    return rfc3339(datetime.fromtimestamp(round(at), UTC))


def _streams_dict(facts: HeartbeatFacts) -> dict[str, dict[str, Any]]:
    return {
        s.key: {"last_poll": None if s.last_poll is None else _utc(s.last_poll), "lag_seconds": s.lag_seconds}
        for s in facts.streams
    }


def heartbeat_json(facts: HeartbeatFacts) -> str:
    """The payload of the JSON formats (legacy, rfc5424, rfc3164): one object under `HEARTBEAT_KEY`, in
    `json.dumps`' default shape, like events."""
    body: dict[str, Any] = {
        "version": facts.version,
        "host": facts.host,
        "server": facts.server,
        "time": rfc3339(facts.time.replace(microsecond=0)),
        "interval_seconds": facts.interval_seconds,
        "backlog": facts.backlog,
        "oldest_undelivered_seconds": facts.oldest_undelivered_seconds,
        "delivered_since_last": facts.delivered_since_last,
        "quarantined": facts.quarantined,
        "trimmed": facts.trimmed,
        "max_lag_seconds": facts.max_lag_seconds,
    }
    if facts.detail:
        body["streams"] = _streams_dict(facts)
    return json.dumps({HEARTBEAT_KEY: body})


def heartbeat_mapped(facts: HeartbeatFacts) -> Mapped:
    """The record CEF and LEEF render: signature `HEARTBEAT_SIGNATURE`, siemconn's version in the header,
    each figure in a labelled custom slot (CEF) or a key of its own (LEEF)."""
    fields = [
        Field("dvchost", "host", facts.host),
        Field("cs1", "server", facts.server, "server"),
        Field("cn1", "backlog", str(facts.backlog), "backlog"),
        Field(
            "cfp1",
            "oldestUndeliveredSeconds",
            str(facts.oldest_undelivered_seconds),
            "oldestUndeliveredSeconds",
        ),
        Field("cn2", "deliveredSinceLast", str(facts.delivered_since_last), "deliveredSinceLast"),
        Field("flexNumber1", "quarantined", str(facts.quarantined), "quarantined"),
        Field("flexNumber2", "trimmed", str(facts.trimmed), "trimmed"),
        Field("cn3", "intervalSeconds", str(facts.interval_seconds), "intervalSeconds"),
    ]
    lag = facts.max_lag_seconds
    if lag is not None:
        fields.append(Field("cfp2", "maxLagSeconds", str(lag), "maxLagSeconds"))
    if facts.detail:
        # compact JSON: no ", " inside the value, which some collectors' key-value parsers split at
        streams = json.dumps(_streams_dict(facts), separators=(",", ":"))
        fields.append(Field("cs2", "streams", streams, "streams", json=True))
    return Mapped(
        HEARTBEAT_PRODUCT, HEARTBEAT_SIGNATURE, HEARTBEAT_NAME, HEARTBEAT_SEVERITY, facts.time, fields
    )


def heartbeat_message(formatter: Formatter, facts: HeartbeatFacts) -> bytes:
    """One heartbeat for `formatter`'s server, without framing: the same syslog header as its events; a
    mapped format (cef, leef) renders `heartbeat_mapped`, the others carry `heartbeat_json`."""
    if isinstance(formatter.syntax, MappedFormat):
        return formatter.format_record(heartbeat_mapped(facts), HEARTBEAT_STREAM, facts.time)
    return formatter.format(heartbeat_json(facts), HEARTBEAT_STREAM, facts.time)


def heartbeat_frame(server: ServerConfig, message: bytes) -> bytes:
    """`message` as its transport sends it: a UDP datagram as is, otherwise framed like the events (RELP
    servers always use LF framing, which the RELP transport splits into one RELP frame per message)."""
    return message if server.server_protocol == "UDP" else frame(message, server.framing)


def heartbeat_wire(formatter: Formatter, facts: HeartbeatFacts) -> bytes | None:
    """The framed heartbeat for `formatter`'s server within its `max_message_size` (which counts the
    framing): whole, else without the per-stream detail (`max_lag_seconds` stays), else None (the caller
    skips it). A heartbeat is never cut: a cut one would not parse."""
    server = formatter.server
    limit = server.max_message_size
    for attempt in (facts, replace(facts, detail=False)):
        wire = heartbeat_frame(server, heartbeat_message(formatter, attempt))
        if not isinstance(limit, int) or limit <= 0 or len(wire) <= limit:
            return wire
    return None


async def gather_facts(
    server: ServerConfig,
    queue: QueueFigures,
    source: HeartbeatSource | None,
    streams: Collection[str],
    now: datetime,
    delivered: int,
) -> HeartbeatFacts:
    """What `server`'s heartbeat says at `now`: `streams` are the enabled streams it takes; without a
    `source` (a queue that keeps no polls or quarantine) the streams are unpolled and the counts 0."""
    assert server.heartbeat_seconds is not None
    polls = source.last_polls() if source is not None else {}
    counts = await source.quarantine_counts() if source is not None else {}
    quarantined, trimmed = quarantine_figures(counts, server)
    depth = await queue.depth(server.name)
    oldest = await queue.oldest_age(server.name) if depth else None
    return HeartbeatFacts(
        server=server.name,
        host=default_host(),
        time=now,
        interval_seconds=server.heartbeat_seconds,
        streams=stream_lags(polls, streams, now.timestamp()),
        backlog=depth,
        oldest_undelivered_seconds=round(oldest or 0.0, 1),
        delivered_since_last=delivered,
        quarantined=quarantined,
        trimmed=trimmed,
    )


def default_host() -> str:
    """This machine's name, as the heartbeat reports it."""
    return sanitize_field(socket.gethostname(), 255)


class HeartbeatSchedule:
    """When one server's next heartbeat is due (on a monotonic clock), and what it has to report.

    Starts due: a server gets a heartbeat as soon as its writer is connected. `sent(now)` schedules the
    next one `every` seconds after `now`, so a late heartbeat (a long write, an outage) shifts the schedule
    instead of being followed by catch-up heartbeats."""

    __slots__ = ("every", "delivered", "_next")

    def __init__(self, every: int) -> None:
        self.every = every
        self.delivered = 0  # events delivered since the last heartbeat that was written
        self._next: float | None = None

    def due(self, now: float) -> bool:
        return self._next is None or now >= self._next

    def wait(self, now: float, longest: float) -> float:
        """Seconds an idle writer may wait for events before the next heartbeat is due (at most `longest`)."""
        if self._next is None:
            return 0.0
        return max(0.0, min(longest, self._next - now))

    def sent(self, now: float, reported: int) -> None:
        """A heartbeat reporting `reported` delivered events was written at `now`."""
        self.delivered -= reported
        self._next = now + self.every
