"""Read one labelled prometheus-client child's current value, for assertions on `Metrics()`.

prometheus-client has no public getter on a child (only the registry-wide `get_sample_value`, which
needs the exported sample name), so the one read of its internal value lives here. The tests that use
it build enabled `Metrics()`, so every child is a real Counter or Gauge.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["metric_value"]


def metric_value(child: object) -> float:
    """The current value of `child`, a `labels(...)` result of an enabled `Metrics()`."""
    assert isinstance(child, Counter | Gauge), f"not a prometheus-client child: {child!r}"
    return float(child._value.get())
