"""Strict parsers of the three message shapes siemconn sends, and of the two TCP framings (test oracles)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from siemconn.devtools.harness import split_frames

__all__ = ["Parsed", "parse", "unframe"]

_LEGACY = re.compile(rb"^<(\d{1,3})>(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ([\x21-\x39\x3b-\x7e]+): (.*)$", re.S)
_RFC5424 = re.compile(
    rb"^<(\d{1,3})>1 (\S+) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) "
    rb"(-|(?:\[[^\]\s=\"]{1,32}(?: [^\]\s=\"]{1,32}=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*\])+) (.*)$",
    re.S,
)
_RFC3164 = re.compile(
    rb"^<(\d{1,3})>((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d) "
    rb"([\x21-\x7e]+) ([A-Za-z0-9]{1,32}): (.*)$",
    re.S,
)


@dataclass(frozen=True)
class Parsed:
    pri: int
    timestamp: str
    hostname: str
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None
    payload: str


def parse(message: bytes, fmt: str) -> Parsed:
    """Parse one unframed message of format `fmt`; AssertionError if it does not match the grammar."""
    if fmt == "legacy":
        m = _LEGACY.match(message)
        assert m, f"not a legacy line: {message[:200]!r}"
        return Parsed(int(m[1]), m[2].decode(), m[3].decode(), None, None, None, None, m[4].decode())
    if fmt == "rfc5424":
        m = _RFC5424.match(message)
        assert m, f"not RFC 5424: {message[:200]!r}"
        return Parsed(
            int(m[1]),
            m[2].decode(),
            m[3].decode(),
            m[4].decode(),
            m[5].decode(),
            m[6].decode(),
            m[7].decode(),
            m[8].decode(),
        )
    m = _RFC3164.match(message)
    assert m, f"not RFC 3164: {message[:200]!r}"
    return Parsed(int(m[1]), m[2].decode(), m[3].decode(), m[4].decode(), None, None, None, m[5].decode())


def unframe(data: bytes, framing: str) -> list[bytes]:
    """Split a TCP byte stream into messages; AssertionError on a partial or malformed frame."""
    buf = bytearray(data)
    try:
        out = split_frames(buf, framing)
    except ValueError as exc:
        raise AssertionError(str(exc)) from None
    assert not buf, f"partial {framing} frame at the end: {bytes(buf[:60])!r}"
    return out
