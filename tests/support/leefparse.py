"""A strict LEEF 2.0 parser written from IBM's LEEF guide (a test oracle; no maintained one is on PyPI).

``LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|attributes``: the header has no escapes, so
a header field never holds '|'. The delimiter is one character, or ``x``/``0x`` and 1-4 hex digits.
Attributes are ``key=value`` separated by the delimiter; a pair splits at its first '='; keys are
non-empty, hold no space, '=' or delimiter, and are unique. No raw CR or LF occurs anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Leef", "SyslogLeef", "delimiter_of", "parse", "parse_syslog"]

_SYSLOG = re.compile(
    r"^<(\d{1,3})>((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d) ([\x21-\x7e]+) (LEEF:.*)$",
    re.S,
)
_HEX = re.compile(r"^(?:0x|x)([0-9A-Fa-f]{1,4})$")


@dataclass(frozen=True)
class Leef:
    version: str
    vendor: str
    product: str
    product_version: str
    event_id: str
    delimiter: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SyslogLeef:
    pri: int
    timestamp: str
    host: str
    leef: Leef


def parse_syslog(message: bytes) -> SyslogLeef:
    """Parse ``<PRI>Mmm dd hh:mm:ss host LEEF:...`` (UTF-8, one line)."""
    text = message.decode("utf-8")
    m = _SYSLOG.match(text)
    assert m, f"not a syslog LEEF line: {text[:200]!r}"
    return SyslogLeef(int(m[1]), m[2], m[3], parse(m[4]))


def delimiter_of(declared: str) -> str:
    """The DelimiterCharacter header field as a character."""
    m = _HEX.match(declared)
    if m:
        return chr(int(m[1], 16))
    assert len(declared) == 1, f"delimiter {declared!r} is neither one character nor hex"
    return declared


def parse(text: str) -> Leef:
    """Parse one LEEF 2.0 record starting with "LEEF:2.0|"."""
    assert "\n" not in text and "\r" not in text, "raw CR or LF in a LEEF record"
    assert text.startswith("LEEF:2.0|"), f"not LEEF 2.0: {text[:50]!r}"
    parts = text[len("LEEF:") :].split("|", 6)
    assert len(parts) == 7, f"LEEF 2.0 header needs 6 '|'-terminated fields, got {len(parts) - 1}"
    version, vendor, product, product_version, event_id, declared, rest = parts
    for name, value in (
        ("vendor", vendor),
        ("product", product),
        ("version", product_version),
        ("EventID", event_id),
    ):
        assert value, f"empty header field {name}"
    delim = delimiter_of(declared)
    assert delim not in "=|", f"delimiter {delim!r} cannot separate attributes"
    attrs: dict[str, str] = {}
    pieces = rest.split(delim)
    if pieces and pieces[-1] == "":
        pieces.pop()  # a trailing delimiter is allowed
    for piece in pieces:
        assert "=" in piece, f"attribute without '=': {piece[:80]!r}"
        key, value = piece.split("=", 1)
        assert key and " " not in key, f"bad key {key!r}"
        assert key not in attrs, f"duplicate key {key!r}"
        attrs[key] = value
    if "sev" in attrs:
        assert attrs["sev"].isdigit() and 1 <= int(attrs["sev"]) <= 10, f"sev {attrs['sev']!r} is not 1-10"
    return Leef(version, vendor, product, product_version, event_id, delim, attrs)
