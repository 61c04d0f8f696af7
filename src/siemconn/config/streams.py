"""The names of the event streams, which config.json's scheduler and a server's `streams` refer to.

STREAMS is also the order every per-stream listing (enabled, disabled, status) follows.
"""

from __future__ import annotations

__all__ = ["OFF", "REQUIRED_STREAMS", "STREAMS"]

STREAMS: tuple[str, ...] = ("audit", "detections", "entity_scoring", "health", "lockdown")
# the reference's three streams: their `scheduler` keys are required; health and lockdown are opt-in
REQUIRED_STREAMS: tuple[str, ...] = ("audit", "detections", "entity_scoring")
OFF = "off"  # `"scheduler": {"audit": "off"}` (or null) turns a stream off
