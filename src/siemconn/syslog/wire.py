"""Formatting and framing a batch for the wire: queue segments -> the chunks `Transport.write` sends.

A batch holds its payloads as bytes, in segments (one per page slice). When the header does not depend on
the payload (every format except rfc5424 with `timestamp: "event"`), a segment is formatted with a few
bytes operations: TCP/TLS with LF framing as ONE chunk `header + (b"\\n" + header).join(payloads) +
b"\\n"`, octet-counting and UDP as one message per event. A segment with a message over the server's
size budget goes through the oversize policy event by event (siemconn.syslog.budget). Invariant: the
bytes on the wire are the same as formatting event by event with `Formatter.format`, fitting with
`Oversizer.fit` (UDP truncate and drop: `fit_datagram`) and framing with `frame`
(tests/unit/syslog/test_writer.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from siemconn.config import ServerConfig
from siemconn.events.batch import Batch, Segment
from siemconn.events.rejected import FORMAT_ERROR, OVERSIZE, Rejected, id_text
from siemconn.logging import get_logger
from siemconn.syslog.budget import Fitted, Oversizer
from siemconn.syslog.format import Formatter

log = get_logger(__name__)

__all__ = ["Oversize", "OversizeEvent", "PreparedBatch", "oversize_detail", "prepare_batch"]


@dataclass(frozen=True, slots=True)
class OversizeEvent:
    """One event over the server's budget and what the policy did (siemconn.syslog.budget.Fitted)."""

    stream: str
    event_id: int | None
    action: str  # trimmed | truncated | dropped | unfittable
    original: int  # bytes of the untrimmed message, framing included
    sent: int  # bytes sent (0: nothing sent)
    removed: tuple[str, ...] = ()


@dataclass
class Oversize:
    """What the oversize policy did to a batch: events truncated, ids of events dropped (both as before
    budgets existed, for UDP and every transport), and, not compared: each oversize event (`events`) and,
    per stream, the full stored events the writer keeps in the quarantine (`kept`)."""

    truncated: int = 0
    dropped_ids: list[int | None] | None = None
    events: list[OversizeEvent] = field(default_factory=list, compare=False)
    kept: dict[str, list[Rejected]] = field(default_factory=dict, compare=False)

    def add(self, stream: str, event_id: int | None, payload: bytes, fitted: Fitted) -> None:
        self.events.append(
            OversizeEvent(stream, event_id, fitted.action, fitted.original, fitted.sent, fitted.removed)
        )
        if fitted.message is None:
            if self.dropped_ids is None:
                self.dropped_ids = []
            self.dropped_ids.append(event_id)
        elif fitted.action == "truncated":
            self.truncated += 1
        self.kept.setdefault(stream, []).append(
            Rejected(payload, OVERSIZE, oversize_detail(fitted), id_text(event_id))
        )


def oversize_detail(f: Fitted) -> str:
    """The quarantine row's detail for an oversize event: the action first (trimmed, truncated, dropped,
    unfittable; `siemconn status` counts by it), then what was sent and the sizes."""
    if f.action == "trimmed":
        return f"trimmed: sent {f.sent} of {f.original} bytes; removed: {', '.join(f.removed)}"
    if f.action == "truncated":
        return f"truncated: sent {f.sent} of {f.original} bytes"
    if f.action == "unfittable":
        return f"unfittable: not sent, {f.original} bytes do not fit even with every removable field trimmed"
    return f"dropped: not sent, {f.original} bytes (oversize policy drop)"


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
) -> tuple[list[int | None], list[bytes], list[bytes]]:
    """A segment whose whole-segment formatting raised, formatted event by event (the slow path): the ids,
    payloads and messages of the events that formatted."""
    log.warning(
        "syslog_segment_format_failed",
        server=server.label,
        stream=seg.stream,
        events=len(seg.payloads),
        error=f"{type(exc).__name__}: {exc}"[:300],
        detail="formatting this segment event by event; events that still fail are quarantined",
    )
    ids: list[int | None] = []
    kept: list[bytes] = []
    msgs: list[bytes] = []
    for event_id, payload in zip(seg.ids, seg.payloads, strict=True):
        msg = _format_guarded(formatter, payload, seg.stream, event_id, now, rejected)
        if msg is not None:
            ids.append(event_id)
            kept.append(payload)
            msgs.append(msg)
    return ids, kept, msgs


def prepare_batch(
    batch: Batch,
    server: ServerConfig,
    formatter: Formatter,
    now: datetime,
    oversizer: Oversizer | None = None,
) -> PreparedBatch:
    """Format and frame `batch` for `server` with message time `now`: the same bytes as formatting event
    by event, without decoding or a per-event header build.

    A formatting failure of one event never stops the writer: a segment is formatted as a whole, and only
    when that raises is it formatted again event by event; an event that still raises is left out of the
    frames and returned in `rejected`.

    The size budget (siemconn.syslog.budget) costs one length comparison per segment while every message is
    under it (header length + the longest payload); only a segment with a message over it is looked at
    event by event, and only those events are parsed (to trim them)."""
    udp = server.server_protocol == "UDP"
    lf = server.framing == "lf"
    sizer = oversizer if oversizer is not None else Oversizer(server, formatter)
    limit = sizer.limit
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
        kept: Sequence[bytes] = payloads
        try:
            prefix = formatter.constant_header(seg.stream, now)
            if (
                prefix is not None
                and lf
                and not udp
                and (limit is None or len(prefix) + max(map(len, payloads)) <= limit)
            ):
                frames.append(prefix + (b"\n" + prefix).join(payloads) + b"\n")
                continue
            if prefix is not None:
                msgs = [prefix + p for p in payloads]
            else:
                fmt = formatter.format_bytes
                stream = seg.stream
                msgs = [fmt(p, stream, now) for p in payloads]
        except Exception as exc:  # one bad event must not stop the writer: per event from here
            ids, kept, msgs = _format_each(seg, server, formatter, now, rejected, exc)
            if not msgs:
                continue
        if limit is not None and max(map(len, msgs)) > limit:
            oversize = oversize or Oversize()
            msgs = _fit(sizer, seg.stream, ids, kept, msgs, now, oversize)
            if not msgs:
                continue
        if udp:
            frames.extend(msgs)
        elif lf:
            frames.append(b"\n".join(msgs) + b"\n")
        else:
            frames.extend([b"%d %s" % (len(m), m) for m in msgs])
    dropped = len(oversize.dropped_ids or ()) if oversize is not None else 0
    n_rejected = sum(map(len, rejected.values()))
    prepared = PreparedBatch(batch, frames, events, events - dropped - n_rejected, oversize, rejected or None)
    prepared.fallbacks = formatter.fallbacks - before
    if prepared.fallbacks:
        prepared.fallback_detail = formatter.fallback_detail
    return prepared


def _fit(
    sizer: Oversizer,
    stream: str,
    ids: Sequence[int | None],
    payloads: Sequence[bytes],
    msgs: list[bytes],
    now: datetime,
    oversize: Oversize,
) -> list[bytes]:
    """`msgs` with each message over the budget replaced by what the policy makes of it (or left out)."""
    limit = sizer.limit
    assert limit is not None
    out: list[bytes] = []
    for event_id, payload, msg in zip(ids, payloads, msgs, strict=True):
        if len(msg) <= limit:
            out.append(msg)
            continue
        fitted = sizer.fit(msg, payload, stream, now)
        oversize.add(stream, event_id, payload, fitted)
        if fitted.message is not None:
            out.append(fitted.message)
    return out
