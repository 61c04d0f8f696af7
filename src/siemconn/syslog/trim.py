"""Trimming one event to a size budget: its bulkiest fields removed, in a documented order, with a marker.

`trim_event(event, stream, render, limit, original)` removes fields from a copy of `event` until
`render(copy)` (the whole message for one server) is at most `limit` bytes, and returns that message and
the removed fields, or None when the event cannot fit even with every removable field gone (the caller
then handles it as `drop`). The stored event is never changed: it stays in the queue, and the caller keeps
it whole in the quarantine.

Removal order (docs/formats.md, "Message size"), per stream (the part of the stream key before its first
dot):

1. the stream's low-value bulk, in `BULK` order (the stream table's `bulk`) (nested detail lists and summaries first; a dotted path
   names a member of a top-level object);
2. then the largest remaining top-level value first (size of its JSON text), until the message fits.

Invariants:

- a field a SIEM correlates on is never removed (`is_protected`): ids (`id` and every `*_id`), type and
  category, timestamps (every key holding "timestamp" or ending in "_time"), threat, certainty, severity,
  the entity's name and URL (`name`, `entity_uid`, `entity_name`, `url`, `*_href`), and the marker itself;
- every trimmed message carries the marker `MARKER`: ``{"bytes": ORIGINAL_SIZE, "fields": [...]}``, the
  size of the untrimmed message as `max_message_size` counts it and the removed fields in removal order.
  It is the last member of the JSON object; CEF and LEEF render it as an extension field of their own
  (siemconn.syslog.budget);
- the result is produced by the server's own formatter from a JSON object, so it is valid JSON (and
  valid CEF or LEEF) by construction.

Each step renders the whole message again. That is O(fields x size), paid only by events over the budget
(a fraction of a percent of a real tenant's events); events under it are never parsed (wire.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from siemconn.config.streams import STREAM_DEFS

__all__ = ["BULK", "MARKER", "Trimmed", "is_protected", "marker_value", "trim_event"]

MARKER: Final = "siemconn_trimmed"

# Low-value bulk per stream, removed first, in this order: the stream table's `bulk` (config/streams.py)
BULK: Final[Mapping[str, tuple[str, ...]]] = {d.name: d.bulk for d in STREAM_DEFS}

_PROTECTED_KEYS: Final = frozenset(
    {
        "id",
        "type",
        "category",
        "threat",
        "certainty",
        "severity",
        "name",
        "entity_uid",
        "entity_name",
        "entity_type",
        "url",
        "detection_type",
        "d_type_vname",
        "urgency_score",
        "username",
        "event_object",
        "event_action",
        "result_status",
        MARKER,
    }
)


class Trimmed(NamedTuple):
    """A message that fits: its bytes and the removed fields (dotted paths), in removal order."""

    message: bytes
    removed: tuple[str, ...]


def is_protected(key: str) -> bool:
    """True for a top-level field a SIEM correlates on, which trimming never removes."""
    return (
        key in _PROTECTED_KEYS
        or key.endswith("_id")
        or "timestamp" in key
        or key.endswith("_time")
        or key.endswith("_href")
    )


def marker_value(original: int, removed: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The marker's value: the untrimmed message's size and the removed fields."""
    return {"bytes": original, "fields": list(removed)}


def _present(event: Mapping[str, Any], path: str) -> bool:
    head, _, member = path.partition(".")
    if not member:
        return head in event and not is_protected(head)
    inner = event.get(head)
    return isinstance(inner, Mapping) and member in inner and not is_protected(head + "_" + member)


def _remove(event: dict[str, Any], path: str) -> None:
    head, _, member = path.partition(".")
    if not member:
        del event[head]
        return
    inner = dict(event[head])  # a copy: the caller's event is never changed
    del inner[member]
    event[head] = inner


def _largest(event: Mapping[str, Any]) -> str | None:
    best: str | None = None
    best_size = -1
    for key, value in event.items():
        if is_protected(key):
            continue
        size = len(json.dumps(value))
        if size > best_size:
            best, best_size = key, size
    return best


def trim_event(
    event: Mapping[str, Any],
    stream: str,
    render: Callable[[dict[str, Any]], bytes],
    limit: int,
    original: int,
    removed: tuple[str, ...] = (),
) -> Trimmed | None:
    """`render` of `event` with fields removed (see the module docstring) and the marker added, once it
    is at most `limit` bytes; None if it never is. The caller has found the whole event over `limit`, so
    at least one field is removed. `removed` names what the caller already left out (the raw event of CEF
    and LEEF); it heads the marker's list, and then the event without it is tried first."""
    work = {k: v for k, v in event.items() if k != MARKER}
    gone = list(removed)
    bulk = [p for p in BULK.get(stream.split(".")[0], ()) if _present(work, p)]
    render_first = bool(gone)  # the event as it is is over the limit: no need to render it
    while True:
        if render_first:
            work[MARKER] = marker_value(original, gone)
            message = render(work)
            if len(message) <= limit:
                return Trimmed(message, tuple(gone))
            del work[MARKER]
        render_first = True
        while bulk and not _present(work, bulk[0]):
            bulk.pop(0)
        path = bulk.pop(0) if bulk else _largest(work)
        if path is None:
            return None
        _remove(work, path)
        gone.append(path)
