"""What a writer reports about the events it sent differently from how they were stored: events over the
server's `max_message_size` (trimmed, truncated, dropped; each kept whole in the quarantine) and events
sent with a fallback (an unusable event time). Each log line is paired with its counter here.

Invariants: every oversize event is counted per server and action, every time; the per-event lines name
the server, the stream, the event id and both sizes; the UDP summary line and the fallback line are
logged once every `TRUNCATION_LOG_EVERY` / `FALLBACK_LOG_EVERY` events, so a steady stream of them is not
a line per event.
"""

from __future__ import annotations

from siemconn.config import ServerConfig
from siemconn.logging import get_logger
from siemconn.ops.metrics import Metrics
from siemconn.syslog.wire import Oversize

__all__ = ["FALLBACK_LOG_EVERY", "TRUNCATION_LOG_EVERY", "WriterReport"]

log = get_logger("siemconn.syslog.writer")

TRUNCATION_LOG_EVERY = 1000
FALLBACK_LOG_EVERY = 1000
_KEPT = "the full event is kept in the queue database: siemconn quarantine export"


class WriterReport:
    """The oversize and fallback reports of one server's writer."""

    def __init__(self, server: ServerConfig, metrics: Metrics) -> None:
        self.server = server
        self._truncations = 0
        self._fallbacks = 0
        self._m_truncated = metrics.events_truncated.labels(server.name)
        self._m_oversize = metrics.events_oversize
        self._m_fallbacks = metrics.format_fallbacks.labels(server.name, "event_time_unusable")

    def fallbacks(self, count: int, detail: str) -> None:
        self._m_fallbacks.inc(count)
        before = self._fallbacks
        self._fallbacks += count
        if before == 0 or before // FALLBACK_LOG_EVERY != self._fallbacks // FALLBACK_LOG_EVERY:
            log.warning(
                "syslog_event_time_unusable",
                server=self.server.label,
                total=self._fallbacks,
                last_problem=detail,
                detail="sent with the send time as TIMESTAMP; the payload is unchanged",
            )

    def oversize(self, o: Oversize) -> None:
        """Log each oversize event (server, stream, id, both sizes, what was done) and count it per action;
        the UDP lines of before budgets existed stay, now naming the event ids."""
        udp = self.server.server_protocol == "UDP"
        budget = self.server.message_budget
        truncated_ids: list[int | None] = []
        for e in o.events:
            self._m_oversize.labels(self.server.name, e.action).inc()
            fields: dict[str, object] = {
                "server": self.server.label,
                "stream": e.stream,
                "event_id": e.event_id,
                "bytes": e.original,
                "sent_bytes": e.sent,
                "max_message_size": budget,
                "action": e.action,
            }
            if e.action == "trimmed":
                log.info("syslog_event_trimmed", **fields, removed=list(e.removed), detail=_KEPT)
            elif e.action == "truncated":
                truncated_ids.append(e.event_id)
                log.warning("syslog_event_truncated", **fields, detail=_KEPT)
            elif udp and e.action == "dropped":
                self._m_truncated.inc()
                log.warning(
                    "syslog_udp_event_dropped",
                    **fields,
                    detail=_KEPT,
                    hint="use TCP or TLS for this server, or oversize 'trim'",
                )
            else:
                self._m_truncated.inc()
                log.warning(
                    "syslog_event_dropped",
                    **fields,
                    detail=_KEPT,
                    hint="over max_message_size even with every removable field trimmed; raise "
                    "max_message_size (and the receiver's limit)"
                    if e.action == "unfittable"
                    else "oversize 'trim' sends it trimmed",
                )
        if o.truncated:
            self._m_truncated.inc(o.truncated)  # UDP: a summary line every TRUNCATION_LOG_EVERY, too
            before = self._truncations
            self._truncations += o.truncated
            if udp and (
                before == 0 or before // TRUNCATION_LOG_EVERY != self._truncations // TRUNCATION_LOG_EVERY
            ):
                log.warning(
                    "syslog_udp_events_truncated",
                    server=self.server.label,
                    total=self._truncations,
                    event_ids=truncated_ids[:20],
                    max_message_size=budget,
                    detail=_KEPT,
                    hint="use TCP or TLS for this server, or oversize 'trim' to send large events whole",
                )
