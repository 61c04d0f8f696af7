"""The text of `siemconn status`: a `StatusReport` rendered as plain ASCII for a terminal.

Invariants: rendering reads only the report (no file, no clock: "ago" is measured from the report's
`generated_at`), so the same report always renders to the same text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from siemconn.queue.reserve import RESERVE_BYTES

if TYPE_CHECKING:
    from siemconn.queue.status import StatusReport

__all__ = ["render_status"]


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "-"
    s = int(age)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _since(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    return f" since {_fmt_time(ts)} ({_fmt_age(max(0.0, now - ts))} ago)"


def _disk_line(report: StatusReport) -> str:
    """Free space on the data disk and the disk reserve's state (docs/reliability.md, "A full disk")."""
    free = "unknown" if report.disk_free is None else f"{report.disk_free / 2**20:.1f} MB free"
    held, size = report.reserve_held or 0, report.reserve_size or RESERVE_BYTES
    if held >= size:
        reserve = f"reserve whole ({size / 2**20:g} MB)"
    else:
        reserve = (
            f"reserve RELEASED ({held / 2**20:.1f} of {size / 2**20:g} MB): the disk filled up; acks and "
            "housekeeping use it, pulling waits until it fits again (free space on this disk)"
        )
    return f"disk: {free}; {reserve}"


def render_status(
    report: StatusReport,
    *,
    streams_off: Sequence[str] = (),
    protocols: Mapping[str, str] | None = None,
) -> str:
    """Human-readable text of a StatusReport (plain ASCII); `streams_off` (from the configuration) are
    listed as off; `protocols` (server -> TCP/UDP/TLS) label UDP counts as "sent" (UDP has no ack)."""
    protocols = protocols or {}
    lines = [f"queue: {report.database}"]
    if report.running_pid is not None:
        lines.append(f"service: running (pid {report.running_pid})")
    else:
        lines.append("service: not running")
    if streams_off:
        lines.append(f"streams off: {', '.join(streams_off)}")
    if not report.exists:
        lines.append("no queue database yet (the service has not run with this data_dir)")
        return "\n".join(lines)
    lines.append(_disk_line(report))
    by_key: dict[str, int] = {}
    by_dest: dict[str, int] = {}
    for q in report.quarantined:
        if q.destination is None:
            by_key[q.key] = by_key.get(q.key, 0) + q.count
        else:
            by_dest[q.destination] = by_dest.get(q.destination, 0) + q.count
    lines.append("")
    lines.append(f"{'stream':<26}{'next_from':>14}{'quarantined':>13}  last successful poll")
    if not report.streams:
        lines.append("  (no stream polled yet)")
    for s in report.streams:
        cp = "-" if s.checkpoint is None else str(s.checkpoint)
        off = " (off)" if s.key.partition(".")[0] in streams_off else ""
        lines.append(f"{s.key:<26}{cp:>14}{by_key.get(s.key, 0):>13}  {_fmt_time(s.last_poll)}{off}")
    lines.append(
        "  next_from: the checkpoint, where the next poll starts (the next event id; health and lockdown: "
        "polls that queued events)"
    )
    lines.append("")
    lines.append(
        f"{'destination':<26}{'undelivered':>14}{'quarantined':>13}  {'oldest undelivered':<20}streams"
    )
    if not report.destinations:
        lines.append("  (no destination)")
    for d in report.destinations:
        n = by_dest.get(d.destination, 0)
        taken = "every stream" if d.streams is None else ", ".join(d.streams)
        lines.append(f"{d.destination:<26}{d.depth:>14}{n:>13}  {_fmt_age(d.oldest_age):<20}{taken}")
    if report.quarantined:
        lines.append("")
        lines.append(
            f"quarantined events: {report.quarantined_total} kept in the queue database, not sent (reason "
            "oversize: each server's line says how many were sent trimmed or truncated) (write them out "
            "with: siemconn quarantine export --output FILE)"
        )
        for q in report.quarantined:
            where = q.key if q.destination is None else f"{q.key} -> {q.destination}"
            lines.append(f"  {where:<38}{q.reason:<16}{q.count:>8}")
    now = report.generated_at
    for d in report.destinations:
        lines.append("")
        proto = protocols.get(d.destination)
        label = f"{d.destination} ({proto})" if proto else d.destination
        state = d.state or "unknown (not recorded yet)"
        reason = f": {d.reason}" if d.reason and d.state != "up" else ""
        lines.append(f"server {label}: {state}{_since(d.state_since, now)}{reason}")
        verb = "sent" if proto == "UDP" else "delivered"
        if d.delivered is None:
            lines.append(f"  {verb}: unknown (this queue file has no delivery record)")
        else:
            last = ""
            if d.last_delivered_at is not None:
                eid = "-" if d.last_event_id is None else str(d.last_event_id)
                last = (
                    f"; last: id {eid}, event time {d.last_event_time or '-'}, "
                    f"{verb} {_fmt_time(d.last_delivered_at)}"
                )
            lines.append(f"  {verb}: {d.delivered} events{last}")
        taken = "every stream" if d.streams is None else ", ".join(d.streams)
        quarantined = "" if d.quarantined is None else f"; quarantined: {d.quarantined}"
        lines.append(
            f"  backlog: {d.depth} undelivered, oldest {_fmt_age(d.oldest_age)}; streams: {taken}{quarantined}"
        )
        if d.oversize:
            counts = ", ".join(f"{action} {n}" for action, n in sorted(d.oversize.items()))
            lines.append(f"  over max_message_size (each kept whole in the quarantine): {counts}")
    if report.replays:
        lines.append("")
        lines.append("replays:")
        for r in report.replays:
            window = (
                f"{_fmt_time(r.since)} .. {_fmt_time(r.until)}"
                if r.sent is None
                else f"sent {_fmt_time(r.sent[0])} .. {_fmt_time(r.sent[1])}"
            )
            stream = f" stream {r.stream}" if r.stream else ""
            detail = f" ({r.detail})" if r.detail else ""
            lines.append(f"  #{r.id} {r.destination}{stream} {window}: {r.state}, {r.events} events{detail}")
    return "\n".join(lines)
