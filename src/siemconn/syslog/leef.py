"""LEEF 2.0 (IBM QRadar Log Event Extended Format), as IBM's LEEF guide defines it.

    LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|key=value<delimiter>key=value...

The delimiter is declared in the header: a printable character as itself, anything else (the default
tab) as ``x`` and two hex digits (``x09``), a form the guide defines. LEEF has no escape sequence, so
siemconn keeps the delimiter, CR, LF and every other control character out of every value (the rule of
`siemconn.syslog.controls`; the delimiter between attributes is the only control byte on the wire):

- a JSON value (the raw event, lists, objects) gets each such character as a JSON ``\\uXXXX`` escape,
  which decodes to the same JSON: lossless. The permitted delimiters (`DELIMITERS`) never occur in JSON
  outside strings, which is what makes this safe;
- any other value gets the delimiter, CR and LF as one space each, and every other C0 control character
  (a tab when it is not the delimiter) and DEL as its Unicode Control Picture (NUL becomes U+2400).
  Header fields get ``|``, CR, LF and the delimiter as ``_``, other controls as their Control Pictures.

An ``=`` in a value needs nothing: a parser splits a pair at its first ``=``, and keys never hold one.
The header fields are siemconn's own constants and ``[a-z0-9_.]`` signature ids. `devTime` is the event
time as ``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` (declared in `devTimeFormat`); `sev` is 1-10.
"""

from __future__ import annotations

from typing import Final

from siemconn.config import LEEF_DELIMITERS
from siemconn.syslog.controls import JSON_ESCAPES, PICTURES, has_control
from siemconn.syslog.mapping import RAW_EVENT_LABEL, VENDOR, VERSION, Mapped, decode, map_event

__all__ = ["DELIMITERS", "DEV_TIME_FORMAT", "LeefEncoder", "declare", "render"]

# tab (LEEF's default) and printable characters that JSON only has inside strings
DELIMITERS: Final = LEEF_DELIMITERS
DEV_TIME_FORMAT: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"


def declare(delimiter: str) -> str:
    """The header's DelimiterCharacter field for `delimiter`."""
    return delimiter if "\x21" <= delimiter <= "\x7e" else f"x{ord(delimiter):02x}"


class LeefEncoder:
    """LEEF 2.0 for one server and one delimiter."""

    __slots__ = ("delimiter", "include_raw", "_text", "_json", "_head")

    def __init__(self, delimiter: str, include_raw: bool) -> None:
        if delimiter not in DELIMITERS:
            raise ValueError(f"LEEF delimiter {delimiter!r} is not one of {DELIMITERS!r}")
        self.delimiter = delimiter
        self.include_raw = include_raw
        self._text = str.maketrans({**PICTURES, delimiter: " ", "\r": " ", "\n": " "})
        self._json = str.maketrans({**JSON_ESCAPES, delimiter: f"\\u{ord(delimiter):04x}"})
        # header fields: no '|', CR, LF or delimiter (each becomes '_'), other controls as pictures
        self._head = str.maketrans({**PICTURES, **dict.fromkeys(("|", "\r", "\n", delimiter), "_")})

    def value(self, value: str, is_json: bool) -> str:
        """One attribute value with the delimiter and control characters kept out (module docstring)."""
        if self.delimiter in value or has_control(value):
            return value.translate(self._json if is_json else self._text)
        return value

    def render(self, m: Mapped) -> str:
        """The LEEF text of a mapped event (no syslog header)."""
        d = self.delimiter
        attrs: list[str] = []
        if m.time is not None:
            ms = m.time.microsecond // 1000
            attrs.append(f"devTime={m.time:%Y-%m-%dT%H:%M:%S}.{ms:03d}+0000")
            attrs.append(f"devTimeFormat={DEV_TIME_FORMAT}")
        attrs.append(f"sev={max(1, m.severity)}")
        attrs.extend(f"{f.leef}={self.value(f.value, f.json)}" for f in m.fields)
        if m.raw:
            attrs.append(f"{RAW_EVENT_LABEL}={self.value(m.raw, True)}")
        head = "|".join(
            v if v.isprintable() and "|" not in v and d not in v else v.translate(self._head)
            for v in (VENDOR, m.product, VERSION, m.signature)
        )
        return f"LEEF:2.0|{head}|{declare(d)}|{d.join(attrs)}"

    def encode(self, payload: str | bytes, stream: str) -> str:
        """The LEEF text of one stored event payload."""
        event, text = decode(payload)
        return self.render(map_event(event, stream, include_raw=self.include_raw, raw_json=text))


def render(m: Mapped, delimiter: str = "\t") -> str:
    """The LEEF text of a mapped event with `delimiter` (convenience form of `LeefEncoder.render`)."""
    return LeefEncoder(delimiter, include_raw=False).render(m)
