"""Salvaging a page the JSON parser rejected: split it into its events, keep the good ones, quarantine
the bad ones with their raw bytes.

Why: one event with bytes that are not UTF-8 (or nested too deep for the parser) makes the whole answer
unparseable, and a stream that cannot parse a page re-fetches the same `from` forever; the page's good
events and every later event would never be sent. This is the slow path, taken only when the fast
parser failed: the body is decoded with "surrogateescape" (every byte survives, invalid ones as lone
surrogates), a non-recursive scanner finds the top-level `events` array and the text span of each of its
elements, and each element is parsed on its own. The envelope (`next_checkpoint`, `remaining_count`) is
parsed with the array cut out.

Invariants: the raw bytes of a quarantined element are exactly the bytes the API sent for it; a body
whose envelope cannot be found or parsed is not salvaged (the caller reports the page as bad, and the
checkpoint does not move).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from siemconn.events.rejected import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, Rejected, id_text, reason_of

__all__ = ["Salvaged", "salvage_page"]

# a JSON string (with escapes), or one structural character; numbers, literals and blanks are skipped
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.S)
_DETAIL_MAX = 300


@dataclass(frozen=True, slots=True)
class Salvaged:
    """A page salvaged element by element: its envelope (without `events`), the good events in order,
    and the elements that are quarantined."""

    envelope: dict[str, Any]
    events: list[dict[str, Any]]
    rejects: list[Rejected]


def _element_spans(text: str) -> tuple[int, int, list[tuple[int, int]]] | None:
    """(start of the events array's content, its end, the span of each element), or None."""
    depth = 0
    prev = ""
    pending = False  # just read `"events":` at depth 1
    open_at = -1
    elem_start = -1
    spans: list[tuple[int, int]] = []
    for m in _TOKENS.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == '"':
            prev = tok
            pending = False
            continue
        if c == ":":
            pending = depth == 1 and prev == '"events"' and open_at < 0
            prev = ":"
            continue
        if c in "[{":
            depth += 1
            if pending and c == "[" and depth == 2:
                open_at = elem_start = m.end()
        elif c in "]}":
            if open_at >= 0 and depth == 2 and c == "]" and elem_start >= 0:
                spans.append((elem_start, m.start()))
                return open_at, m.start(), spans
            depth -= 1
        elif c == "," and open_at >= 0 and depth == 2:
            spans.append((elem_start, m.start()))
            elem_start = m.end()
        pending = False
        prev = c
    return None


def _first_id(text: str) -> str | None:
    """The event id of an element that is not UTF-8, when the element still parses."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return id_text(value.get("id")) if isinstance(value, dict) else None


def salvage_page(content: bytes, loads: Callable[[bytes], Any]) -> Salvaged | None:
    """Split an answer the parser rejected into good events and quarantined elements, or None."""
    text = content.decode("utf-8", "surrogateescape")
    found = _element_spans(text)
    if found is None:
        return None
    open_at, close_at, spans = found
    try:
        envelope = json.loads(text[:open_at] + text[close_at:])
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict):
        return None
    if len(spans) == 1 and not text[spans[0][0] : spans[0][1]].strip():
        spans = []  # "events": []
    events: list[dict[str, Any]] = []
    rejects: list[Rejected] = []
    for a, b in spans:
        elem = text[a:b].strip()
        if not elem:
            return None  # "[1,,2]" or a trailing comma: not a page we can split with confidence
        raw = elem.encode("utf-8", "surrogateescape")
        try:
            elem.encode("utf-8")
        except UnicodeEncodeError as exc:
            detail = f"bytes that are not UTF-8 at offset {exc.start} of the event"
            rejects.append(Rejected(raw, INVALID_UTF8, detail, _first_id(elem)))
            continue
        try:
            value = loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = reason_of(exc) if isinstance(exc, RecursionError) else INVALID_JSON
            detail = f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX]
            rejects.append(Rejected(raw, reason, detail))
            continue
        if not isinstance(value, dict):
            rejects.append(Rejected(raw, NOT_AN_OBJECT, f"a JSON {type(value).__name__}, not an object"))
            continue
        events.append(value)
    envelope["events"] = events
    return Salvaged(envelope, events, rejects)
