"""What the snapshot streams look like, written down once for the tests that check them (independent of
the fake tenant, whose own tables are what these are checked against)."""

from __future__ import annotations

__all__ = ["HEALTH_SECTIONS"]

# the top-level sections of a RUX /health answer
HEALTH_SECTIONS = {
    "cpu",
    "disk",
    "memory",
    "network",
    "power",
    "sensors",
    "system",
    "trafficdrop",
    "connectivity",
    "hostid",
}
