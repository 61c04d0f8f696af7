"""The event encoder: an API event (a parsed JSON object) -> the payload text stored and sent.

Invariant: `encode_event(event) == json.dumps(event)` byte for byte (", " / ": " separators, ensure_ascii,
allow_nan, sort_keys off): the reference connector's byte shape, which SIEM parsers already accept, and
never a raw newline (the page log joins payloads with newlines).

Two encoders keep it. The fast one is ujson with json.dumps' options; it is used for an event only when
its output is known to be json.dumps' bytes. ujson differs from json.dumps in exactly two places over the
JSON value domain (what a JSON parser returns: dict with str keys, list, str, int of any size, float
including NaN/Infinity/-0.0, bool, None), and in a third with json.dumps' other key types (int, float,
bool, None); all are visible in ujson's own output and so detected with substring tests:

* DEL (U+007F): json.dumps escapes it as `\\u007f`, ujson writes the raw byte. Any raw DEL in the output
  sends the event to the stdlib encoder.
* a float whose repr has a one-digit negative exponent (1e-05 ... 9.9e-10): json.dumps writes `1e-05`,
  ujson `1e-5`. A digit, `e-`, one digit and then a character that can end a number in ujson's output
  (`,`, `]`, `}`, the `"` closing a key, the end) sends the event to the stdlib encoder; a string holding
  such text only costs the slower path.
* a NaN or infinite float as a dict KEY: json.dumps writes `"NaN"` / `"Infinity"` / `"-Infinity"`,
  ujson `"nan"` / `"inf"` / `"-inf"` (float repr). `nan": ` or `inf": ` in the output sends the event to
  the stdlib encoder (parsed JSON has str keys only, so this costs nothing in practice).

Lone surrogates are escaped by both alike. Whatever ujson refuses (nesting deeper than its 1024 levels,
types outside the domain) raises inside ujson and the event goes to the stdlib encoder, which then gives
json.dumps' result or json.dumps' exception. ujson nests deeper than json.dumps (1024 levels against the
interpreter's recursion limit, ~1000): an output with more than 900 opening brackets (only events longer
than 1,800 characters are counted) also goes to the stdlib encoder, so json.dumps' RecursionError is
kept for what json.dumps cannot encode (the queue quarantines such an event). Outside the domain (Decimal, tuple or bytes keys, objects with `__json__` or `toDict`),
ujson encodes what json.dumps refuses; the queue only encodes parsed events, and `encode_event_stdlib` is
there for anything else. tests/test_encoder_identity.py proves the identity with hypothesis.

A page at a time (`encode_events`, what the queue uses): ujson encodes every event (one C call each, no
Python frame per event) and the same tests run once over the page's newline-joined text, which holds each
event's output between newlines; a test that hits anywhere, or an exception, sends the whole page down the
one-event-at-a-time path (`encode_event`), so the bytes are those of `encode_event` either way. At page
level the number-end class includes the newline (an event's end in the joined text). Each test over the
joined text costs one scan of the page instead of one call per event.

ujson only encodes here (never parses): its input is data that orjson or json already parsed.
`SIEMCONN_FAST_ENCODER=off` (env, read at import) uses the stdlib encoder alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

__all__ = [
    "EVENT_ID_FIELD",
    "FAST_ENCODER",
    "I64_MAX",
    "I64_MIN",
    "encode_event",
    "encode_event_fast",
    "encode_event_stdlib",
    "encode_events",
    "event_id",
]

EVENT_ID_FIELD = "id"
I64_MIN, I64_MAX = -(2**63), 2**63 - 1  # SQLite INTEGER

Encoder = Callable[[Any], str]


def _make_stdlib_encoder() -> Encoder:
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


encode_event_stdlib: Encoder = _make_stdlib_encoder()
"""json.dumps(event), byte for byte, by CPython's own C encoder."""

# ujson's form of a one-digit negative exponent ("1e-5"): a digit, "e-", one digit, then what can follow a
# number in ujson's output with these separators (",", "]", "}", the quote closing a key, the end). The
# literal "e-" first keeps re's prefix scan; a UUID's "9e-4a" does not match.
_SHORT_NEGATIVE_EXPONENT = re.compile(r'e-(?<=[0-9]e-)[0-9](?=[,\]}"]|\Z)').search
# The same tests over a page's newline-joined payloads, where an event's end is a newline. Each is one scan
# of the page: the exponent pattern starts at the "-" (rarer than "e" in event text, so re's prefix scan
# stops less often), and re's literal search is faster here than `in` for the six-character key texts.
_SHORT_NEGATIVE_EXPONENT_PAGE = re.compile(r'-(?<=[0-9]e-)[0-9](?=[,\]}"\n]|\Z)').search
_NAN_KEY_PAGE = re.compile('nan": ').search
_INF_KEY_PAGE = re.compile('inf": ').search


# nesting levels below which json.dumps cannot hit the recursion limit (1000 by default, less the caller's
# frames); an output with more opening brackets (each level needs at least two characters) may be deeper
_DEEP = 900


def _make_fast_encoder(stdlib: Encoder) -> Encoder | None:
    """ujson with json.dumps' options, routed to `stdlib` where ujson's bytes would differ; None if ujson
    is not importable."""
    try:
        import ujson
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    dumps = ujson.dumps
    search = _SHORT_NEGATIVE_EXPONENT

    def encode(event: Any) -> str:
        try:
            s: str = dumps(event, ensure_ascii=True, escape_forward_slashes=False, separators=(", ", ": "))
        except Exception:  # noqa: BLE001 - whatever ujson refuses, json.dumps decides (result or error)
            return stdlib(event)
        if "\x7f" in s or ("e-" in s and search(s) is not None) or 'nan": ' in s or 'inf": ' in s:
            return stdlib(event)
        if len(s) > 2 * _DEEP and s.count("[") + s.count("{") > _DEEP:
            return stdlib(event)  # possibly nested beyond json.dumps' recursion limit: json.dumps decides
        return s

    return encode


def _make_page_encoder() -> Callable[[Sequence[Any]], tuple[list[str], str] | None] | None:
    """ujson over a page of events with the fast encoder's tests run once on the joined text (module
    docstring); None if ujson is not importable."""
    try:
        import ujson
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    dumps = partial(ujson.dumps, ensure_ascii=True, escape_forward_slashes=False, separators=(", ", ": "))
    search, nan_key, inf_key = _SHORT_NEGATIVE_EXPONENT_PAGE, _NAN_KEY_PAGE, _INF_KEY_PAGE

    def encode_page(events: Sequence[Any]) -> tuple[list[str], str] | None:
        try:
            payloads: list[str] = list(map(dumps, events))
        except Exception:  # noqa: BLE001 - the one-by-one path decides for each event (result or error)
            return None
        data = "\n".join(payloads)
        if (
            "\x7f" in data
            or search(data) is not None
            or nan_key(data) is not None
            or inf_key(data) is not None
        ):
            return None
        if len(data) > 2 * _DEEP and max(map(len, payloads)) > 2 * _DEEP:
            for s in payloads:
                if len(s) > 2 * _DEEP and s.count("[") + s.count("{") > _DEEP:
                    return None
        return payloads, data

    return encode_page


_fast = _make_fast_encoder(encode_event_stdlib)
encode_event_fast: Encoder = _fast if _fast is not None else encode_event_stdlib
"""json.dumps(event), byte for byte, for parsed JSON events (the domain in the module docstring)."""

FAST_ENCODER: bool = _fast is not None and os.environ.get("SIEMCONN_FAST_ENCODER", "").lower() != "off"
"""Whether encode_event is the ujson path (on unless ujson is missing or SIEMCONN_FAST_ENCODER=off)."""

encode_event: Encoder = encode_event_fast if FAST_ENCODER else encode_event_stdlib
"""json.dumps(event), byte for byte: what the queue stores for every event."""

_page = _make_page_encoder() if FAST_ENCODER else None


def encode_events(events: Sequence[Any]) -> tuple[list[str], str] | None:
    """`[encode_event(e) for e in events]` and those payloads joined with newlines, when the fast path
    gives them for the whole page at once; None when any event needs `encode_event` one at a time (it
    would be routed to the stdlib encoder, or raise), and always None with the fast encoder off."""
    return None if _page is None else _page(events)


def event_id(event: Mapping[str, Any]) -> int | None:
    """The event's integer id, or None: missing, not an integer, or beyond SQLite's signed 64 bits (such an
    event is kept and sent, it just takes no part in the id-based dedupe)."""
    v = event.get(EVENT_ID_FIELD)
    if isinstance(v, int) and not isinstance(v, bool) and I64_MIN <= v <= I64_MAX:
        return int(v)
    return None
