"""An event's own time, `event_timestamp` (what a SIEM user searches by): the one rule that reads it, for
every consumer. The syslog header (rfc5424 with `timestamp: "event"`), CEF's `rt` and LEEF's `devTime`,
the replay window and the delivery record all read the field through this module, so they agree on every
input.

The rule (`as_event_time`):

- the value must be JSON text; anything else (a number, null, an object) is no time;
- surrounding whitespace is stripped (`str.strip`), then the text is read by `datetime.fromisoformat`:
  ISO 8601 as Python 3.11 reads it, so a trailing ``Z`` and ``+HH:MM`` / ``+HHMM`` offsets are accepted,
  fractional seconds are kept to the microsecond (more digits are cut), and a date alone is midnight;
- a time without an offset (naive) is UTC;
- the result is an aware datetime in UTC; a time that has no UTC form (year 1 at +05:00, year 9999 at
  -23:59: `OverflowError`) is no time, like text that is not a date.

"No time" never raises and never loses an event: the header uses the send time (and says why, see
`event_time`), CEF and LEEF leave `rt` / `devTime` out, and the replay window uses the page's commit time.

Reading the field from a stored payload: orjson first (fast), and the standard library's decoder for what
orjson refuses but `json.loads` reads (NaN, lone surrogates, integers beyond 64 bits elsewhere in the
event), so the field is found exactly when `json.loads` would find it.

`event_timestamp_text` is the field as the API sent it (the delivery record shows it unchanged);
`replay_time` is the time as epoch seconds, or the commit time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = ["EVENT_TIME_FIELD", "as_event_time", "event_time", "event_timestamp_text", "replay_time"]

EVENT_TIME_FIELD: Final = "event_timestamp"


def _parse(text: str) -> datetime:
    """The rule of the module docstring for text; raises ValueError or OverflowError for no time."""
    ts = datetime.fromisoformat(text.strip())
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def as_event_time(value: Any) -> datetime | None:
    """`value` (a decoded `event_timestamp`, or any other ISO 8601 field) as an aware UTC datetime, or
    None when it is no time by the module's rule. Never raises."""
    if not isinstance(value, str):
        return None
    try:
        return _parse(value)
    except (ValueError, OverflowError):
        return None


def _field(payload: str | bytes) -> Any:
    """The payload's `event_timestamp` value, or None when it has none or is not a JSON object; raises
    what `json.loads` raises for a payload that is not JSON (or not UTF-8)."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # what orjson refuses but the standard library reads (NaN, lone surrogates); stored payloads
        # are UTF-8 (ASCII in fact), so bytes are decoded as such rather than sniffed
        event = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
    return event.get(EVENT_TIME_FIELD) if isinstance(event, dict) else None


def event_time(payload: str | bytes) -> tuple[datetime | None, str | None]:
    """(the event's time, None), or (None, why it is unusable), or (None, None) when the event has none.

    `payload` is the stored JSON text, as `str` or UTF-8 bytes. Never raises: a payload that does not
    parse, a value that is not text, text that is not a date and a date without a UTC form all give the
    reason, and the caller sends the event with its send time instead (the payload is intact)."""
    try:
        raw = _field(payload)
        if raw is None:
            return None, None
        if not isinstance(raw, str) or not raw.strip():
            return None, f"event_timestamp {str(raw)[:64]!r} is not a date"
        return _parse(raw), None
    except Exception as exc:  # any failure means "use the send time", never a lost or stuck event
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"


def event_timestamp_text(payload: bytes) -> str | None:
    """The event's `event_timestamp` as sent by the API, or None (not JSON, absent, not text)."""
    try:
        value = _field(payload)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def replay_time(payload: bytes, committed_at: float) -> float:
    """The time a replay window is matched against: `event_timestamp`, else the page's commit time."""
    parsed = as_event_time(event_timestamp_text(payload))
    return committed_at if parsed is None else parsed.timestamp()
