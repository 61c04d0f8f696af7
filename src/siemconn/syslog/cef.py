"""CEF (ArcSight Common Event Format, version 0), as "Implementing ArcSight CEF" rev 25 defines it.

    CEF:0|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension

Escaping: the spec's rules, and for control characters, which the spec has no escape for, the rule of
`siemconn.syslog.controls` (no raw control byte ever reaches the wire):

- header fields: a backslash becomes ``\\\\`` and a pipe ``\\|``. The header cannot span lines, so CR and LF
  in a header field (only ``Name`` carries API text) become a space; every other C0 control character
  (tab included) and DEL becomes its Unicode Control Picture (NUL becomes U+2400).
- extension values: a backslash becomes ``\\\\``, an equals sign ``\\=``, LF ``\\n`` and CR ``\\r``. Every
  other C0 control character (tab included) and DEL becomes its Control Picture in a text value and the
  JSON escape ``\\u00XX`` in a JSON value (whose backslash is then escaped as any other: ``\\\\u0000``),
  which decodes to the same JSON. Pipes and spaces stay as they are. Keys are fixed ASCII names chosen
  by `siemconn.syslog.mapping`.
- everything is UTF-8; other characters are carried as they are. Printable text is never changed.

Header fields are cut to the spec's lengths (vendor and product 63, version 31, class id 1023, name
512 characters) before escaping. `rt` is the event time in milliseconds since the epoch (one of the
spec's timestamp forms, and the one every parser reads the same way). Labelled custom slots are written
label first (``cs1Label=entityType cs1=host``), and the full event JSON (``cs6``, label ``rawEvent``),
when it is carried, comes last so that a UDP cut at `max_message_size` removes it first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from siemconn.syslog.controls import JSON_ESCAPES, PICTURES, has_control
from siemconn.syslog.mapping import RAW_EVENT_LABEL, VENDOR, VERSION, Mapped, decode, map_event

__all__ = ["RAW_EVENT_KEY", "CefEncoder", "escape_header", "escape_value", "render"]

RAW_EVENT_KEY = "cs6"
_HEADER: Final = str.maketrans({**PICTURES, "\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_SPEC_ESCAPES: Final = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}
_VALUE: Final = str.maketrans({**PICTURES, **_SPEC_ESCAPES})
# a JSON escape's backslash is escaped as CEF text: \u0000 is written \\u0000
_JSON_VALUE: Final = str.maketrans(
    {c: e.replace("\\", "\\\\") for c, e in JSON_ESCAPES.items()} | _SPEC_ESCAPES
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def escape_header(value: str, max_len: int) -> str:
    """One header field: at most `max_len` characters, then `\\` and `|` escaped, CR/LF as spaces, other
    control characters as their Control Pictures."""
    return value[:max_len].translate(_HEADER)


def escape_value(value: str, is_json: bool = False) -> str:
    """One extension value: `\\`, `=`, LF and CR escaped; other control characters as their Control
    Pictures, or in JSON text (`is_json`) as JSON escapes (module docstring)."""
    if "\\" in value or "=" in value or has_control(value):
        return value.translate(_JSON_VALUE if is_json else _VALUE)
    return value


def render(m: Mapped) -> str:
    """The CEF text of a mapped event (no syslog header)."""
    parts: list[str] = []
    if m.time is not None:
        parts.append(f"rt={(m.time - _EPOCH) // _MS}")
    for f in m.fields:
        if f.label is not None:
            parts.append(f"{f.cef}Label={escape_value(f.label)}")
        parts.append(f"{f.cef}={escape_value(f.value, f.json)}")
    if m.raw:
        parts.append(f"{RAW_EVENT_KEY}Label={RAW_EVENT_LABEL} {RAW_EVENT_KEY}={escape_value(m.raw, True)}")
    return (
        f"CEF:0|{escape_header(VENDOR, 63)}|{escape_header(m.product, 63)}|{escape_header(VERSION, 31)}|"
        f"{escape_header(m.signature, 1023)}|{escape_header(m.name, 512)}|{m.severity}|{' '.join(parts)}"
    )


class CefEncoder:
    """CEF for one server: `include_raw_event` decides whether the full event JSON is carried."""

    __slots__ = ("include_raw",)

    def __init__(self, include_raw: bool) -> None:
        self.include_raw = include_raw

    def encode(self, payload: str | bytes, stream: str) -> str:
        """The CEF text of one stored event payload."""
        event, text = decode(payload)
        return render(map_event(event, stream, include_raw=self.include_raw, raw_json=text))
