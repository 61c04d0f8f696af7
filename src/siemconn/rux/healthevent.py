"""The health stream: `GET /api/<version>/health` answers one object; it is forwarded once per poll as one
event, the object exactly as returned.

The object has no id and no cursor, so every poll is one new event (never deduplicated). An answer that
is not a JSON object is a bad answer: nothing is forwarded for that poll and the next poll tries again.
"""

from __future__ import annotations

from typing import Any

from siemconn.errors import RuxResponseError

__all__ = ["health_event"]


def health_event(body: Any, path: str) -> dict[str, Any]:
    """The one event of a health poll: the answer itself, which must be a JSON object."""
    if not isinstance(body, dict):
        raise RuxResponseError(
            f"bad response from {path} for stream health: expected a JSON object, got a JSON "
            f"{type(body).__name__}; nothing forwarded, the next poll tries again"
        )
    return body
