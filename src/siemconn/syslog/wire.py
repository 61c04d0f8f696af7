"""Formatting and framing a batch for the wire: queue segments -> the chunks `Transport.write` sends.

A batch holds its payloads as bytes, in segments (one per page slice). When the header does not depend on
the payload (every format except rfc5424 with `timestamp: "event"`), a segment is formatted with a few
bytes operations: TCP/TLS with LF framing as ONE chunk `header + (b"\\n" + header).join(payloads) +
b"\\n"`, octet-counting and UDP as one message per event (UDP still applies `udp_oversize` per
datagram). Invariant: the bytes on the wire are the same as formatting event by event with
`Formatter.format` and framing with `frame` / `fit_datagram` (tests/test_writer_bytes.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from siemconn.config import ServerConfig
from siemconn.queue import Batch
from siemconn.syslog.format import Formatter, fit_datagram

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
    minus UDP-dropped ones)."""

    batch: Batch
    frames: list[bytes]
    events: int
    sent: int
    oversize: Oversize | None


def prepare_batch(batch: Batch, server: ServerConfig, formatter: Formatter, now: datetime) -> PreparedBatch:
    """Format and frame `batch` for `server` with message time `now`: the same bytes as formatting event
    by event, without decoding or a per-event header build."""
    udp = server.server_protocol == "UDP"
    lf = server.framing == "lf"
    frames: list[bytes] = []
    oversize: Oversize | None = None
    events = 0
    for seg in batch.segments:
        payloads = seg.payloads
        if not payloads:
            continue
        events += len(payloads)
        prefix = formatter.constant_header(seg.stream, now)
        if not udp and lf:
            if prefix is not None:
                frames.append(prefix + (b"\n" + prefix).join(payloads) + b"\n")
            else:
                fmt = formatter.format_bytes
                stream = seg.stream
                frames.append(b"\n".join([fmt(p, stream, now) for p in payloads]) + b"\n")
            continue
        if prefix is not None:
            msgs = [prefix + p for p in payloads]
        else:
            fmt = formatter.format_bytes
            stream = seg.stream
            msgs = [fmt(p, stream, now) for p in payloads]
        if not udp:
            frames.extend([b"%d %s" % (len(m), m) for m in msgs])
            continue
        limit = server.max_message_size
        if max(map(len, msgs)) <= limit:
            frames.extend(msgs)
            continue
        for event_id, msg in zip(seg.ids, msgs, strict=True):
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
    return PreparedBatch(batch, frames, events, events - dropped, oversize)
