"""An event set aside instead of queued or sent (`Rejected`): its raw bytes, the reason (one of `REASONS`,
a metric label) and a detail; shared by the source (a page's bad elements), the buffer (an event it cannot
encode) and the sink (an event a formatter refused), which all hand them to the queue's quarantine
(`siemconn.queue.quarantine`, the table and its export).

`raw_json` re-encodes, without recursion, an event that parsed but is too deep for json.dumps, so its
raw text can still be kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from siemconn.events.encoder import EVENT_ID_FIELD, I64_MAX, I64_MIN

__all__ = [
    "FORMAT_ERROR",
    "INVALID_JSON",
    "INVALID_UTF8",
    "NOT_AN_OBJECT",
    "OVERSIZE",
    "REASONS",
    "TOO_DEEP",
    "UNENCODABLE",
    "Rejected",
    "id_text",
    "int_id",
    "raw_json",
    "reason_of",
    "reject_parsed",
    "rejected_from_exception",
]

INVALID_UTF8: Final = "invalid_utf8"  # the event's bytes are not UTF-8
INVALID_JSON: Final = "invalid_json"  # the event's text is not JSON
NOT_AN_OBJECT: Final = "not_an_object"  # an element of `events` that is not a JSON object
TOO_DEEP: Final = "too_deep"  # nested deeper than the encoder or parser can go (RecursionError)
UNENCODABLE: Final = "unencodable"  # any other failure to encode the event at commit
FORMAT_ERROR: Final = "format_error"  # a destination's formatter raised on the stored payload
# over a destination's max_message_size: kept whole in the quarantine, sent trimmed or truncated, or not
# sent (detail)
OVERSIZE: Final = "oversize"
REASONS: Final = (INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, TOO_DEEP, UNENCODABLE, FORMAT_ERROR, OVERSIZE)

_DETAIL_MAX = 300


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event that is quarantined instead of queued: its raw bytes and why.

    `event_id` is the JSON text of the event's `id` when it could be read (`5`, `"abc"`), else None.
    """

    raw: bytes
    reason: str
    detail: str
    event_id: str | None = None


def reason_of(exc: BaseException) -> str:
    """The quarantine reason for an exception raised while encoding or parsing one event."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, UnicodeError):
        return INVALID_UTF8
    return UNENCODABLE


def _detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_DETAIL_MAX]


def id_text(value: Any) -> str | None:
    """The JSON text of an event id (int or str) for the `event_id` column, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = json.dumps(value)
    return text if len(text) <= _DETAIL_MAX else None


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.encoder.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    return json.encoder.encode_basestring_ascii(repr(value))


def raw_json(value: Any) -> bytes:
    """`json.dumps(value)` without recursion (an explicit stack), for values too deep for json.dumps.

    Used only to keep the raw text of an event that parsed but cannot be queued; the output is the JSON
    text json.dumps would give (", " and ": " separators, ASCII escapes).
    """
    out: list[str] = []
    stack: list[tuple[Iterator[Any], bool, str]] = []  # (items left, is an object, closing bracket)
    started: list[bool] = []

    def emit(item: Any) -> None:
        if isinstance(item, dict):
            out.append("{")
            stack.append((iter(item.items()), True, "}"))
            started.append(False)
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append((iter(item), False, "]"))
            started.append(False)
        else:
            out.append(_scalar(item))

    emit(value)
    while stack:
        items, is_object, closer = stack[-1]
        item: Any = next(items, _END)
        if item is _END:
            out.append(closer)
            stack.pop()
            started.pop()
            continue
        if started[-1]:
            out.append(", ")
        started[-1] = True
        if is_object:
            key, val = item
            out.append(_scalar(key if isinstance(key, str) else str(key)))
            out.append(": ")
            emit(val)
        else:
            emit(item)
    return "".join(out).encode("ascii")


_END = object()


def rejected_from_exception(raw: bytes, exc: BaseException, event_id: Any = None) -> Rejected:
    """A `Rejected` for an event whose encoding or parsing raised `exc`."""
    return Rejected(raw, reason_of(exc), _detail(exc), id_text(event_id))


def reject_parsed(event: Mapping[str, Any], exc: BaseException) -> Rejected:
    """A parsed event the encoder cannot write, with its JSON text re-encoded without recursion."""
    try:
        raw = raw_json(event)
    except Exception:  # pragma: no cover - parsed JSON always re-encodes
        raw = b""
    return rejected_from_exception(raw, exc, event.get(EVENT_ID_FIELD))


def int_id(r: Rejected) -> int | None:
    """A quarantined event's integer id (it counts towards the dedupe high-water mark), or None."""
    if r.event_id is None or not r.event_id.lstrip("-").isdigit():
        return None
    v = int(r.event_id)
    return v if I64_MIN <= v <= I64_MAX else None
