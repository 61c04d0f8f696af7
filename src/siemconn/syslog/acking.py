"""Recording a delivered batch: its quarantine rows (events a formatter refused, oversize events kept
whole), then its ack, before the writer moves on.

Invariants: the rows are durable before the ack, so an event that left as a trimmed, truncated or no
message at all is kept whole first; a queue that cannot take them (a full disk) is retried in place every
`ACK_RETRY_SECONDS`, never raised (the writer stays alive and the batch is not resent), and logged once
when it starts failing and once when it works again.
"""

from __future__ import annotations

import time

from siemconn.errors import QueueUnavailableError
from siemconn.logging import get_logger
from siemconn.syslog.contracts import WriterContext
from siemconn.syslog.wire import PreparedBatch

__all__ = ["ACK_RETRY_SECONDS", "record_delivery"]

log = get_logger("siemconn.syslog.writer")

ACK_RETRY_SECONDS = 1.0


async def record_delivery(pool: WriterContext, name: str, label: str, prepared: PreparedBatch) -> bool:
    """Quarantine the batch's unformattable events, then ack it. A queue that cannot be written (disk
    full) is retried here, not raised: the writer stays alive and the batch is not resent. The first
    failure is logged, and the ack that finally works, not every retry (the queue's own disk-full
    line and gauge say why meanwhile). False when stopping first (the batch stays unacked and is
    resent after the restart, at most once)."""
    failed_since: float | None = None
    attempts = 0
    while True:
        try:
            if prepared.rejected:
                for stream, rejects in prepared.rejected.items():
                    await pool.queue.quarantine(name, stream, rejects)
                prepared.rejected = None
            if prepared.oversize is not None and prepared.oversize.kept:
                for stream, kept in prepared.oversize.kept.items():  # the full events, before the ack
                    await pool.queue.quarantine(name, stream, kept)
                prepared.oversize.kept = {}
            await pool.queue.ack(prepared.batch)
            if failed_since is not None:
                log.info(
                    "queue_ack_recorded",
                    server=label,
                    attempts=attempts + 1,
                    after_seconds=round(time.monotonic() - failed_since, 1),
                )
            return True
        except QueueUnavailableError as exc:
            attempts += 1
            if failed_since is None:
                failed_since = time.monotonic()
                log.error(
                    "queue_ack_failed",
                    server=label,
                    error=str(exc),
                    retry_every_seconds=ACK_RETRY_SECONDS,
                    detail="the batch was delivered; its ack is retried until it is recorded "
                    "(nothing is lost or resent); logged again once it is",
                )
            if pool.stopping:
                return False
            await pool.until_stopped(pool.sleep(ACK_RETRY_SECONDS))
            if pool.stopping:
                return False
