"""Prometheus metrics, on a registry of our own (no global state). Served only if metrics_address is set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """All counters and gauges of one siemconn process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_fetched = Counter(
            "siemconn_events_fetched", "Events fetched from RUX", ["stream"], registry=r
        )
        self.events_delivered = Counter(
            "siemconn_events_delivered", "Events accepted by a syslog server", ["server"], registry=r
        )
        self.events_failed = Counter(
            "siemconn_events_failed",
            "Events whose write failed (they stay queued and are resent)",
            ["server"],
            registry=r,
        )
        self.events_truncated = Counter(
            "siemconn_events_truncated",
            "Events truncated or dropped by the UDP oversize policy",
            ["server"],
            registry=r,
        )
        self.api_requests = Counter(
            "siemconn_api_requests", "RUX API requests by status", ["status"], registry=r
        )
        self.reconnects = Counter(
            "siemconn_reconnects", "Reconnects per syslog server", ["server"], registry=r
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
