"""The event encoder: an API event (a parsed JSON object) -> the payload text stored and sent.

Invariant: `encode_event(event) == json.dumps(event)` byte for byte (", " / ": " separators, ensure_ascii,
allow_nan, sort_keys off): the reference connector's byte shape, which SIEM parsers already accept, and
never a raw newline (the page log joins payloads with newlines).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EVENT_ID_FIELD", "I64_MAX", "I64_MIN", "encode_event", "event_id"]

EVENT_ID_FIELD = "id"
I64_MIN, I64_MAX = -(2**63), 2**63 - 1  # SQLite INTEGER


def _make_encoder() -> Callable[[Any], str]:
    """json.dumps(event) built once, without circular-reference markers.

    json.dumps builds a new C encoder object per call and keeps markers per container. A parsed JSON page
    cannot contain a reference cycle; an application-built cyclic dict would hit the recursion limit
    (RecursionError) instead of json's ValueError. Interpreters without the C accelerator get
    JSONEncoder(check_circular=False).encode.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    default = json.JSONEncoder().default
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(check_circular=False).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    chunks = c_make_encoder(
        None, default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    join = "".join

    def encode(event: Any) -> str:
        return join(chunks(event, 0))

    return encode


encode_event: Callable[[Any], str] = _make_encoder()
"""json.dumps(event), byte for byte."""


def event_id(event: Mapping[str, Any]) -> int | None:
    """The event's integer id, or None: missing, not an integer, or beyond SQLite's signed 64 bits (such an
    event is kept and sent, it just takes no part in the id-based dedupe)."""
    v = event.get(EVENT_ID_FIELD)
    if isinstance(v, int) and not isinstance(v, bool) and I64_MIN <= v <= I64_MAX:
        return int(v)
    return None
