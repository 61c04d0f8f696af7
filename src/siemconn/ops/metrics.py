"""Prometheus metrics, on a registry of our own (no global state). Served only if metrics_address is set.

`Metrics()` builds real prometheus-client counters and gauges. `Metrics(enabled=False)`, what the service
uses when no metrics endpoint is configured (the default), gives objects with the same calls that do
nothing, and does not import prometheus-client at all (its cost is in docs/performance.md). So metrics
are never optional: every component takes a `Metrics` (default `NO_METRICS`) and calls it unguarded.

Each metric is set in one place: queue_depth, checkpoint and queue_disk_full by the queue (siemconn.queue.store),
oldest_age by the service's heartbeat, the writer counters and server_up by the writer pool, the API
counters and last_poll by the source side. `emit` pairs a log line with its counter in one call (as
Vector's internal_events do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["NO_METRICS", "CounterLike", "GaugeLike", "Incrementable", "Metrics", "Settable", "emit"]


class Incrementable(Protocol):
    """One labelled counter."""

    def inc(self, amount: float = 1) -> None: ...


class Settable(Protocol):
    """One labelled gauge."""

    def set(self, value: float) -> None: ...


class CounterLike(Protocol):
    """The part of a prometheus-client Counter that siemconn uses."""

    def labels(self, *values: str, **kw: str) -> Incrementable: ...


class GaugeLike(Protocol):
    """The part of a prometheus-client Gauge that siemconn uses."""

    def labels(self, *values: str, **kw: str) -> Settable: ...


def emit(
    log_call: Callable[..., object], event: str, counter: Incrementable, amount: float = 1, **fields: object
) -> None:
    """Count `amount` on `counter` and log `event` (a snake_case name) with `fields`, in one call."""
    counter.inc(amount)
    log_call(event, **fields)


class _Off:
    """A metric that records nothing: labels() returns itself, inc() and set() do nothing."""

    __slots__ = ()

    def labels(self, *values: str, **kw: str) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None


class Metrics:
    """All counters and gauges of one siemconn process."""

    events_fetched: CounterLike
    events_delivered: CounterLike
    events_sent: CounterLike
    events_failed: CounterLike
    events_truncated: CounterLike
    events_oversize: CounterLike
    events_quarantined: CounterLike
    events_duplicate: CounterLike
    format_fallbacks: CounterLike
    api_requests: CounterLike
    api_envelope_deviations: CounterLike
    reconnects: CounterLike
    heartbeats_sent: CounterLike
    queue_depth: GaugeLike
    oldest_age: GaugeLike
    last_poll: GaugeLike
    checkpoint: GaugeLike
    server_up: GaugeLike
    queue_disk_full: Settable

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry: CollectorRegistry | None = None
        if not enabled:
            off = _Off()
            for name in self.__annotations__:
                setattr(self, name, off)
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge

        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_fetched = Counter(
            "siemconn_events_fetched", "Events fetched from RUX", ["stream"], registry=r
        )
        self.events_delivered = Counter(
            "siemconn_events_delivered",
            "Events accepted by a syslog server (TCP, TLS, RELP)",
            ["server"],
            registry=r,
        )
        self.events_sent = Counter(
            "siemconn_events_sent",
            "Events sent as UDP datagrams (UDP has no acknowledgement: sent, not known delivered)",
            ["server"],
            registry=r,
        )
        self.events_failed = Counter(
            "siemconn_events_failed",
            "Events whose write failed (they stay queued and are resent)",
            ["server"],
            registry=r,
        )
        self.events_truncated = Counter(
            "siemconn_events_truncated",
            "Events truncated or not sent by the oversize policy (every transport; trimmed ones are not)",
            ["server"],
            registry=r,
        )
        self.events_oversize = Counter(
            "siemconn_events_oversize",
            "Events over a server's max_message_size, by what was done: trimmed, truncated, dropped, "
            "unfittable (not sent: over the budget even trimmed); each is kept whole in the quarantine",
            ["server", "action"],
            registry=r,
        )
        self.events_quarantined = Counter(
            "siemconn_events_quarantined",
            "Events kept in the quarantine instead of queued or sent (reason: see docs/reliability.md)",
            ["stream", "reason"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "siemconn_events_duplicate",
            "Events the API returned again (id at or below one already queued), not queued twice",
            ["stream"],
            registry=r,
        )
        self.format_fallbacks = Counter(
            "siemconn_format_fallbacks",
            "Events sent with a fallback (e.g. the send time for an unusable event_timestamp)",
            ["server", "reason"],
            registry=r,
        )
        self.api_requests = Counter(
            "siemconn_api_requests", "RUX API requests by status", ["status"], registry=r
        )
        self.api_envelope_deviations = Counter(
            "siemconn_api_envelope_deviations",
            "API pages whose envelope deviated from the documented shape, read leniently (kind: docs/reliability.md)",
            ["stream", "kind"],
            registry=r,
        )
        self.reconnects = Counter(
            "siemconn_reconnects", "Reconnects per syslog server", ["server"], registry=r
        )
        self.heartbeats_sent = Counter(
            "siemconn_heartbeats_sent",
            "In-band heartbeats written to a syslog server (heartbeat_seconds)",
            ["server"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "siemconn_queue_depth", "Undelivered events per server", ["server"], registry=r
        )
        self.oldest_age = Gauge(
            "siemconn_oldest_undelivered_seconds",
            "Age of the oldest undelivered event",
            ["server"],
            registry=r,
        )
        self.last_poll = Gauge(
            "siemconn_last_successful_poll_timestamp",
            "Unix time of the last successful poll",
            ["stream"],
            registry=r,
        )
        self.checkpoint = Gauge(
            "siemconn_checkpoint", "Committed checkpoint per stream", ["stream"], registry=r
        )
        self.server_up = Gauge(
            "siemconn_server_up", "1 while the server is reachable", ["server"], registry=r
        )
        self.queue_disk_full = Gauge(
            "siemconn_queue_disk_full",
            "1 while the queue's disk is full (a write failed for lack of space; the disk reserve is in use "
            "and pulling is paused until it can be allocated again)",
            registry=r,
        )

    def forget_servers(self, names: list[str]) -> None:
        """Remove the gauges of servers a reload removed: a gauge left behind keeps its last value (a
        removed server would look up, or backlogged, forever). Counters stay (they only go up)."""
        if not self.enabled or not names:
            return
        for gauge in (self.server_up, self.queue_depth, self.oldest_age):
            for name in names:
                try:
                    gauge.remove(name)  # type: ignore[attr-defined]
                except KeyError:
                    pass


NO_METRICS: Final = Metrics(enabled=False)
"""The metrics of a component nobody watches: every call does nothing (stateless, safe to share)."""
