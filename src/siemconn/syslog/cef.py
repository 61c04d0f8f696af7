"""CEF (ArcSight Common Event Format, version 0), as "Implementing ArcSight CEF" rev 25 defines it.

    CEF:0|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension

Escaping, exactly the spec's rules and nothing else:

- header fields: a backslash becomes ``\\\\`` and a pipe ``\\|``. The header cannot span lines, so CR and LF
  in a header field (only ``Name`` carries API text) become a space.
- extension values: a backslash becomes ``\\\\``, an equals sign ``\\=``, LF ``\\n`` and CR ``\\r``. Pipes
  and spaces stay as they are. Keys are fixed ASCII names chosen by `siemconn.syslog.mapping`.
- everything is UTF-8; other characters, control characters included, are carried as they are.

Header fields are cut to the spec's lengths (vendor and product 63, version 31, class id 1023, name
512 characters) before escaping. `rt` is the event time in milliseconds since the epoch (one of the
spec's timestamp forms, and the one every parser reads the same way). Labelled custom slots are written
label first (``cs1Label=entityType cs1=host``), and the full event JSON (``cs6``, label ``rawEvent``),
when it is carried, comes last so that a UDP cut at `max_message_size` removes it first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from siemconn.syslog.mapping import RAW_EVENT_LABEL, VENDOR, VERSION, Mapped, decode, map_event

__all__ = ["RAW_EVENT_KEY", "CefEncoder", "escape_header", "escape_value", "render"]

RAW_EVENT_KEY = "cs6"
_HEADER: Final = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_VALUE: Final = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def escape_header(value: str, max_len: int) -> str:
    """One header field: at most `max_len` characters, then `\\` and `|` escaped, CR/LF as spaces."""
    return value[:max_len].translate(_HEADER)


def escape_value(value: str) -> str:
    """One extension value: `\\`, `=`, LF and CR escaped."""
    if "\\" in value or "=" in value or "\n" in value or "\r" in value:
        return value.translate(_VALUE)
    return value


def render(m: Mapped) -> str:
    """The CEF text of a mapped event (no syslog header)."""
    parts: list[str] = []
    if m.time is not None:
        parts.append(f"rt={(m.time - _EPOCH) // _MS}")
    for f in m.fields:
        if f.label is not None:
            parts.append(f"{f.cef}Label={escape_value(f.label)}")
        parts.append(f"{f.cef}={escape_value(f.value)}")
    if m.raw:
        parts.append(f"{RAW_EVENT_KEY}Label={RAW_EVENT_LABEL} {RAW_EVENT_KEY}={escape_value(m.raw)}")
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
