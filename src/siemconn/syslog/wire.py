"""Formatting and framing a batch for the wire: queue segments -> the chunks `Transport.write` sends.

A batch holds its payloads as bytes, in segments (one per page slice). When the header does not depend on
the payload (every format except rfc5424 with `timestamp: "event"`), a segment is formatted with a few
bytes operations: TCP/TLS with LF framing as ONE chunk `header + (b"\\n" + header).join(payloads) +
b"\\n"`, octet-counting and UDP as one message per event (UDP still applies `udp_oversize` per
datagram). Invariant: the bytes on the wire are the same as formatting event by event with
`Formatter.format` and framing with `frame` / `fit_datagram` (tests/test_writer_bytes.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from siemconn.config import ServerConfig
from siemconn.events.batch import Batch, Segment
from siemconn.events.rejected import FORMAT_ERROR, Rejected, id_text
from siemconn.logging import get_logger
from siemconn.syslog.format import Formatter, fit_datagram

log = get_logger(__name__)

__all__ = ["Oversize", "PreparedBatch", "prepare_batch"]


@dataclass
class Oversize:
    """What the UDP oversize policy did to a batch: events truncated, ids of events dropped."""

    truncated: int = 0
    dropped_ids: list[int | None] | None = None


@dataclass
class PreparedBatch:
    """A batch formatted for the wire. `frames` are bytes chunks for `Transport.write`: one per event,
    except for TCP/TLS LF framing from segments, where one chunk holds a whole segment's lines. So the
    counts are carried explicitly: `events` is the batch's size, `sent` the events in `frames` (the batch
    minus UDP-dropped and quarantined ones). `rejected` holds, per stream, the events the formatter raised
    on: the writer quarantines them before it acks the batch, so no event of a batch is skipped silently.
    `fallbacks` counts events sent with a fallback (the send time for an unusable event time)."""

    batch: Batch
    frames: list[bytes]
    events: int
    sent: int
    oversize: Oversize | None
    rejected: dict[str, list[Rejected]] | None = None
    fallbacks: int = 0
    fallback_detail: str = ""


def _format_guarded(
    formatter: Formatter,
    payload: bytes,
    stream: str,
    event_id: int | None,
    now: datetime,
    rejected: dict[str, list[Rejected]],
) -> bytes | None:
    """One event's message, or None after recording it in `rejected` when the formatter raised."""
    try:
        return formatter.format_bytes(payload, stream, now)
    except Exception as exc:  # any format, any event: quarantined, never a dead writer
        detail = f"{type(exc).__name__}: {exc}"[:300]
        rejected.setdefault(stream, []).append(Rejected(payload, FORMAT_ERROR, detail, id_text(event_id)))
        return None


def _format_each(
    seg: Segment,
    server: ServerConfig,
    formatter: Formatter,
    now: datetime,
    rejected: dict[str, list[Rejected]],
    exc: Exception,
) -> tuple[list[int | None], list[bytes]]:
    """A segment whose whole-segment formatting raised, formatted event by event (the slow path)."""
    log.warning(
        "syslog_segment_format_failed",
        server=server.label,
        stream=seg.stream,
        events=len(seg.payloads),
        error=f"{type(exc).__name__}: {exc}"[:300],
        detail="formatting this segment event by event; events that still fail are quarantined",
    )
    ids: list[int | None] = []
    msgs: list[bytes] = []
    for event_id, payload in zip(seg.ids, seg.payloads, strict=True):
        msg = _format_guarded(formatter, payload, seg.stream, event_id, now, rejected)
        if msg is not None:
            ids.append(event_id)
            msgs.append(msg)
    return ids, msgs


def prepare_batch(batch: Batch, server: ServerConfig, formatter: Formatter, now: datetime) -> PreparedBatch:
    """Format and frame `batch` for `server` with message time `now`: the same bytes as formatting event
    by event, without decoding or a per-event header build.

    A formatting failure of one event never stops the writer: a segment is formatted as a whole, and only
    when that raises is it formatted again event by event; an event that still raises is left out of the
    frames and returned in `rejected`."""
    udp = server.server_protocol == "UDP"
    lf = server.framing == "lf"
    frames: list[bytes] = []
    oversize: Oversize | None = None
    rejected: dict[str, list[Rejected]] = {}
    before = formatter.fallbacks
    events = 0
    for seg in batch.segments:
        payloads = seg.payloads
        if not payloads:
            continue
        events += len(payloads)
        ids: Sequence[int | None] = seg.ids
        try:
            prefix = formatter.constant_header(seg.stream, now)
            if prefix is not None and lf and not udp:
                frames.append(prefix + (b"\n" + prefix).join(payloads) + b"\n")
                continue
            if prefix is not None:
                msgs = [prefix + p for p in payloads]
            else:
                fmt = formatter.format_bytes
                stream = seg.stream
                msgs = [fmt(p, stream, now) for p in payloads]
        except Exception as exc:  # one bad event must not stop the writer: per event from here
            ids, msgs = _format_each(seg, server, formatter, now, rejected, exc)
            if not msgs:
                continue
        if not udp:
            if lf:
                frames.append(b"\n".join(msgs) + b"\n")
            else:
                frames.extend([b"%d %s" % (len(m), m) for m in msgs])
            continue
        limit = server.max_message_size
        if max(map(len, msgs)) <= limit:
            frames.extend(msgs)
            continue
        for event_id, msg in zip(ids, msgs, strict=True):
            fitted = fit_datagram(msg, server)
            if fitted is not msg:
                oversize = oversize or Oversize()
                if fitted is None:
                    if oversize.dropped_ids is None:
                        oversize.dropped_ids = []
                    oversize.dropped_ids.append(event_id)
                    continue
                oversize.truncated += 1
            frames.append(fitted)
    dropped = len(oversize.dropped_ids or ()) if oversize is not None else 0
    n_rejected = sum(map(len, rejected.values()))
    prepared = PreparedBatch(batch, frames, events, events - dropped - n_rejected, oversize, rejected or None)
    prepared.fallbacks = formatter.fallbacks - before
    if prepared.fallbacks:
        prepared.fallback_detail = formatter.fallback_detail
    return prepared
