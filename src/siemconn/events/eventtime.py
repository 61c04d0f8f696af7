"""An event's own time as the replay window and the delivery record read it: `event_timestamp` (what a
SIEM user searches by), taken from the stored payload without trusting it to be there or to parse.

`event_timestamp_text` is the text as the API sent it (the delivery record shows it unchanged);
`replay_time` is that text as epoch seconds, or the page's commit time for an event without a readable
one (health, lockdown).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

__all__ = ["EVENT_TIME_FIELD", "event_timestamp_text", "replay_time"]

EVENT_TIME_FIELD = "event_timestamp"


def _parse_time(text: str) -> float | None:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def event_timestamp_text(payload: bytes) -> str | None:
    """The event's `event_timestamp` as sent by the API, or None (not JSON, absent, not text)."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict):
        ts = value.get(EVENT_TIME_FIELD)
        if isinstance(ts, str):
            return ts
    return None


def replay_time(payload: bytes, committed_at: float) -> float:
    """The time a replay window is matched against: `event_timestamp`, else the page's commit time."""
    text = event_timestamp_text(payload)
    parsed = None if text is None else _parse_time(text)
    return committed_at if parsed is None else parsed
