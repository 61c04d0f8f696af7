"""The event encoder: an API event (a parsed JSON object) -> the payload text stored and sent.

Invariant: `encode_event(event) == json.dumps(event)` byte for byte (", " / ": " separators, ensure_ascii,
allow_nan, sort_keys off): the reference connector's byte shape, which SIEM parsers already accept, and
never a raw newline (the page log joins payloads with newlines).

Three encoders keep it, tried in this order:

1. The C encoder (`_jsonenc.c`, built with the package when a C compiler is there; optional). It writes
   each value by json's own rules with the functions float and int use for their repr, so its bytes are
   json.dumps' by construction; it returns None for anything outside the parsed-JSON domain it knows
   (tuples, subclasses, non-str keys, nesting deeper than 256 levels), and that event goes to 2.
2. ujson with json.dumps' options, used for an event only when its output is known to be json.dumps'
   bytes (below).
3. The stdlib encoder (CPython's C encoder with json.dumps' arguments): json.dumps itself.

ujson differs from json.dumps in exactly two places over the
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
there for anything else. tests/unit/events/test_encoder.py proves the identity with hypothesis.

A page at a time (`encode_events`, what the queue uses): the C encoder writes the page's newline-joined
text in one call. Where it leaves the page, ujson encodes every event (one C call each, no Python frame per
event) and the same tests run once over the page's newline-joined text, which holds each event's output
between newlines; a test that hits anywhere, or an exception, sends the whole page down the
one-event-at-a-time path (`encode_event`), so the bytes are those of `encode_event` either way. At page
level the number-end class includes the newline (an event's end in the joined text). Each test over the
joined text costs one scan of the page instead of one call per event.

Neither fast encoder parses anything: their input is data that orjson or json already parsed.
`SIEMCONN_FAST_ENCODER` (env, read at import): `off` uses the stdlib encoder alone, `ujson` skips the C
encoder; unset, the fastest built one is used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

__all__ = [
    "C_ENCODER",
    "ENCODER",
    "EVENT_ID_FIELD",
    "Encoder",
    "FAST_ENCODER",
    "I64_MAX",
    "I64_MIN",
    "encode_event",
    "encode_event_c",
    "encode_event_fast",
    "encode_event_stdlib",
    "encode_event_ujson",
    "encode_events",
    "encode_events_c",
    "encode_events_ujson",
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


def _load_c() -> Any:
    """The C encoder module (`_jsonenc.c`), or None where the package was built without it."""
    try:
        from siemconn.events import _jsonenc
    except ImportError:
        return None
    return _jsonenc


_c = _load_c()
C_ENCODER: bool = _c is not None
"""Whether the C encoder was built (it is optional: see setup.py)."""

_ujson = _make_fast_encoder(encode_event_stdlib)
encode_event_ujson: Encoder = _ujson if _ujson is not None else encode_event_stdlib
"""json.dumps(event), byte for byte, for parsed JSON events, by ujson routed as the module docstring says."""


def _make_c_encoder(c: Any, fallback: Encoder) -> Encoder:
    """The C encoder for one event; what it does not vouch for (None) or raises on goes to `fallback`,
    which then gives json.dumps' bytes or json.dumps' exception."""
    dumps = c.dumps

    def encode(event: Any) -> str:
        try:
            s: str | None = dumps(event)
        except Exception:  # noqa: BLE001 - the fallback decides (result or json.dumps' error)
            return fallback(event)
        return fallback(event) if s is None else s

    return encode


encode_event_c: Encoder | None = None if _c is None else _make_c_encoder(_c, encode_event_ujson)
"""json.dumps(event), byte for byte, by the C encoder, or None where it was not built."""

encode_event_fast: Encoder = encode_event_c if encode_event_c is not None else encode_event_ujson
"""json.dumps(event), byte for byte: the fastest encoder this build has (C, else ujson)."""


def _choose(setting: str) -> str:
    """SIEMCONN_FAST_ENCODER: "off" -> the stdlib encoder, "ujson" -> ujson (routed), anything else -> the
    fastest built one."""
    if setting == "off":
        return "stdlib"
    if setting == "ujson" or _c is None:
        return "ujson" if _ujson is not None else "stdlib"
    return "c"


ENCODER: str = _choose(os.environ.get("SIEMCONN_FAST_ENCODER", "").lower())
"""Which encoder encode_event is: "c", "ujson" or "stdlib" (read once, at import)."""

FAST_ENCODER: bool = ENCODER != "stdlib"
"""Whether encode_event is a fast path (the C encoder or ujson) rather than the stdlib encoder alone."""

encode_event: Encoder = {"c": encode_event_fast, "ujson": encode_event_ujson}.get(
    ENCODER, encode_event_stdlib
)
"""json.dumps(event), byte for byte: what the queue stores for every event."""

_ujson_page = _make_page_encoder()
_c_page: Callable[[list[Any]], str | None] | None = None if _c is None else _c.dumps_lines


def encode_events_c(events: Sequence[Any]) -> str | None:
    """The C encoder's page text (`"\\n".join(map(json.dumps, events))`), or None where it does not
    vouch for every event, raises, or was not built."""
    if _c_page is None:
        return None
    try:
        return _c_page(events if type(events) is list else list(events))
    except Exception:  # noqa: BLE001 - ujson, or the one-by-one path, decides
        return None


def encode_events_ujson(events: Sequence[Any]) -> str | None:
    """ujson's page text, or None where any event would be routed or raises (module docstring)."""
    encoded = None if _ujson_page is None else _ujson_page(events)
    return None if encoded is None else encoded[1]


def encode_events(events: Sequence[Any]) -> str | None:
    """`"\\n".join(map(encode_event, events))` when a fast path vouches for the whole page at once: the C
    encoder first, then ujson. None when any event needs `encode_event` one at a time (it would be routed
    to another encoder, or raise), and always None with the fast encoders off."""
    if ENCODER == "c":
        data = encode_events_c(events)
        if data is not None:
            return data
    return encode_events_ujson(events) if FAST_ENCODER else None


def event_id(event: Mapping[str, Any]) -> int | None:
    """The event's integer id, or None: missing, not an integer, or beyond SQLite's signed 64 bits (such an
    event is kept and sent, it just takes no part in the id-based dedupe)."""
    v = event.get(EVENT_ID_FIELD)
    if isinstance(v, int) and not isinstance(v, bool) and I64_MIN <= v <= I64_MAX:
        return int(v)
    return None
