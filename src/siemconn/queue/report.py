"""What the queue tells the operator: each log line paired with its counter, in one call.

Invariants: called on the event loop only, after the write it reports is durable (a log line never
announces what a failed commit did not store); each event name is logged from this one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from siemconn.events.rejected import OVERSIZE, Rejected
from siemconn.logging import get_logger
from siemconn.ops.metrics import Metrics
from siemconn.queue.commit import CommitResult

__all__ = ["report_commit", "report_pull", "report_quarantined"]

log = get_logger(__name__)

_SOURCE_HINT = "kept in the queue database; see it with: siemconn quarantine export"
_SINK_HINT = "not sent to this destination; kept in the queue database: siemconn quarantine export"


def report_quarantined(
    metrics: Metrics, stream: str, rejects: Sequence[Rejected], destination: str | None = None
) -> None:
    """Events set aside in the quarantine: by the source side (destination None: they could not be
    stored) or for one destination (its formatter refused them, or, reason oversize, the event was over its
    size budget: the writer logged what it sent, so that is only counted here)."""
    where = {} if destination is None else {"destination": destination}
    for r in rejects:
        if r.reason == OVERSIZE:
            metrics.events_quarantined.labels(stream, r.reason).inc()
            continue
        log.error(
            "event_quarantined",
            stream=stream,
            **where,
            event_id=r.event_id,
            reason=r.reason,
            detail=r.detail,
            raw_bytes=len(r.raw),
            hint=_SOURCE_HINT if destination is None else _SINK_HINT,
        )
        metrics.events_quarantined.labels(stream, r.reason).inc()


def report_commit(metrics: Metrics, key: str, result: CommitResult) -> None:
    """The duplicates a commit dropped and the events it quarantined."""
    if result.duplicates:
        log.info(
            "duplicate_events_dropped",
            stream=key,
            count=result.duplicates,
            first_id=result.dup_min,
            last_id=result.dup_max,
            high_water_mark=result.hwm,
            detail="ids at or below the highest id already queued for this stream are not queued again",
        )
        metrics.events_duplicate.labels(key).inc(result.duplicates)
    report_quarantined(metrics, key, result.quarantined)


def report_pull(ok: bool, reason: str) -> None:
    """A change of whether the source may pull (logged on changes only)."""
    if ok:
        log.info("queue_pull_resumed", detail="queue has room again; fetching resumes")
    else:
        log.warning("queue_pull_paused", reason=reason, detail="fetching paused; no event is dropped")
