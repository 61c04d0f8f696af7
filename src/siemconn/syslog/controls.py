"""Control characters in CEF and LEEF: what replaces them, so that no raw control byte reaches the wire.

A C0 control character (U+0000-U+001F) or DEL (U+007F) in a record breaks collectors even where the
CEF or LEEF spec is silent about it: syslog-ng ends a message at a NUL and reads the rest as a new,
headerless one; rsyslog rewrites controls as ``#ooo`` on receive by default; an LF ends an LF-framed
message anywhere. Neither spec has a general escape for them, so each format module uses its spec's own
escape where there is one (CEF's ``\\n`` and ``\\r`` in extension values) and these replacements for
the rest:

- in a value that is JSON text (the raw event, lists and objects): the JSON escape ``\\u00XX``. In
  valid JSON a raw control character is either DEL inside a string, where the escape decodes to the
  same character (lossless), or tab, CR or LF as whitespace between tokens, which siemconn's JSON text
  (``json.dumps`` output) never has;
- anywhere else: the character's Unicode Control Picture, U+2400 + its code (NUL is ``␀`` U+2400, ESC
  ``␛`` U+241B, DEL ``␡`` U+2421). It is printable, one character, valid UTF-8 that no collector treats
  specially, and shows in the SIEM what was there.

LEEF's tab delimiter is the only control character siemconn ever writes raw: it separates attributes,
which the LEEF guide allows. C1 controls (U+0080-U+009F) are left as they are: in UTF-8 they are two
bytes of 0x80 or more, which no syslog framing or collector treats as a separator.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["CONTROLS", "JSON_ESCAPES", "PICTURES", "has_control", "picture"]

CONTROLS: Final = (*(chr(c) for c in range(0x20)), "\x7f")
_SHORT: Final = 256  # up to this length one isprintable pass beats 33 substring searches


def picture(ch: str) -> str:
    """The Unicode Control Picture of a C0 control character or DEL (U+2400-U+241F, U+2421)."""
    return "\u2421" if ch == "\x7f" else chr(0x2400 + ord(ch))


def has_control(value: str) -> bool:
    """Whether `value` may hold a C0 control character or DEL: True whenever it does; for a short value
    also when it holds another non-printable character (a translation then changes nothing).

    This runs on every CEF/LEEF value, so it takes the fastest exact-enough test for the length: one C
    pass of `str.isprintable` for short values, one substring search per control character (each a
    memchr-speed scan) for long ones such as the raw event, where that is several times faster than a
    regular expression or `isprintable` (figures in docs/formats.md, "Cost")."""
    if len(value) <= _SHORT:
        return not value.isprintable()
    for c in CONTROLS:
        if c in value:
            return True
    return False


# per control character: its picture (text values and header fields) and its JSON escape (JSON values)
PICTURES: Final[Mapping[str, str]] = MappingProxyType({c: picture(c) for c in CONTROLS})
JSON_ESCAPES: Final[Mapping[str, str]] = MappingProxyType({c: f"\\u{ord(c):04x}" for c in CONTROLS})
