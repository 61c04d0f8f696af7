"""The page transcoder (queue.transcode) stores exactly what parsing and encoding would store.

The reference is the object path it replaces: `loads_page` (orjson, json for what orjson would change),
then `encode_event` per event, and `event.get("id")`. Pages are generated as TEXT, so that every way the
API could write the same value is covered: whitespace, escapes (short, \\u in either case, surrogate
pairs, `\\/`), raw UTF-8, number spellings (exponents, `-0`, long mantissas), repeated keys, key order,
and text that is not JSON or that the transcoder must leave to the parser (invalid UTF-8, lone
surrogates, raw control characters, NaN, integers beyond 18 digits, non-object events, odd ids).
Whenever the transcoder answers, its answer must be the reference's; where the reference fails, the
transcoder must not answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.examples import examples

from siemconn.events import transcode
from siemconn.events.encoder import encode_event
from siemconn.events.transcode import EncodedEvents, transcode_page
from siemconn.rux.page import loads_page

pytestmark = pytest.mark.skipif(not transcode.TRANSCODER, reason="built without the C encoder")

WS = st.sampled_from(["", "", " ", "\n", "\t", "\r\n  ", "  "])
SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _u(c: int, upper: bool) -> str:
    return (f"\\u{c:04X}" if upper else f"\\u{c:04x}") if c < 0x10000 else _pair(c, upper)


def _pair(c: int, upper: bool) -> str:
    v = c - 0x10000
    return _u(0xD800 | (v >> 10), upper) + _u(0xDC00 | (v & 0x3FF), upper)


code_points = st.sampled_from(
    [0, 0x1F, 0x20, 0x22, 0x2F, 0x5C, 0x7E, 0x7F, 0x80, 0xE9, 0x7FF, 0x800, 0x2028, 0xFFFF, 0x10000, 0x1F600]
    + [0x10FFFF]
) | st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF)


@st.composite
def string_piece(draw: st.DrawFn) -> str:
    """One character of a JSON string, in one of the ways JSON may write it."""
    c = draw(code_points)
    ch = chr(c)
    forms = [_u(c, draw(st.booleans()))]
    if ch in SHORT:
        forms.append(SHORT[ch])
    if c >= 0x20 and ch not in '"\\':
        forms.append(ch)  # raw (UTF-8 in the body)
    return draw(st.sampled_from(forms))


BAD_STRING_PIECES = ["\\ud800", "\\udc00x", "\\ud800\\u0041", "\x01", "\x1f", "\\x", "\\u12", "\\U0041"]
strings = st.lists(string_piece(), max_size=12).map(lambda ps: '"' + "".join(ps) + '"') | st.sampled_from(
    ['""', '"id"', '"a"', '"events"', '"\\u0065vents"', '"i\\u0064"']
)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["int"] * 4 + ["float"] * 2 + ["exp"] * 2 + ["special", "big"]))
    if kind == "int":
        return str(draw(st.integers(-(10**18) + 1, 10**18 - 1)))
    if kind == "big":
        return str(draw(st.integers(-(10**30), 10**30)))
    if kind == "special":
        return draw(st.sampled_from(["-0", "0", "-0.0", "0.0", "0e0", "-0E-0", "1E400", "-1e400", "1e-400"]))
    mant = str(draw(st.integers(0, 10**20)))
    sign = draw(st.sampled_from(["", "-"]))
    frac = draw(st.sampled_from(["", "." + str(draw(st.integers(0, 10**17)))]))
    if kind == "float":
        return sign + mant.lstrip("0").rjust(1, "0") + (frac or ".0")
    exp = (
        draw(st.sampled_from(["e", "E"]))
        + draw(st.sampled_from(["", "+", "-"]))
        + str(draw(st.integers(0, 330)))
    )
    return sign + mant.lstrip("0").rjust(1, "0") + frac + exp


scalars = strings | numbers() | st.sampled_from(["true", "false", "null"])


def _obj(pairs: list[tuple[str, str]], ws: str) -> str:
    return "{" + ws + ("," + ws).join(f"{k}{ws}:{ws}{v}" for k, v in pairs) + ws + "}"


def _arr(items: list[str], ws: str) -> str:
    return "[" + ws + ("," + ws).join(items) + ws + "]"


values = st.recursive(
    scalars,
    lambda inner: (
        st.builds(_arr, st.lists(inner, max_size=5), WS)
        | st.builds(_obj, st.lists(st.tuples(strings, inner), max_size=5), WS)
    ),
    max_leaves=25,
)
ids = (
    st.sampled_from(["1", "-5", "0", "-0", "null", "123456789012345678", "5", "77", "2"])
    | st.integers(-(10**18) + 1, 10**18 - 1).map(str)
    | st.sampled_from(['"x"', "1.5", "1e2", "12345678901234567890", "true", "[]"])
)
events = st.builds(
    lambda pairs, id_text, where, ws: _obj(pairs[:where] + [('"id"', id_text)] + pairs[where:], ws),
    st.lists(st.tuples(strings, values), max_size=6),
    ids,
    st.integers(0, 6),
    WS,
) | st.builds(_obj, st.lists(st.tuples(strings, values), max_size=6), WS)


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    ws = draw(WS)
    evs = draw(
        st.lists(events | st.just("[1]") | values, max_size=5)
        if draw(st.booleans())
        else st.lists(events, max_size=6)
    )
    pairs = [
        ('"events"', _arr(evs, ws)),
        ('"next_checkpoint"', draw(st.sampled_from(["7", "null", "1e3"]))),
        ('"remaining_count"', "0"),
    ]
    if draw(st.booleans()):
        pairs.append((draw(strings), draw(values)))
    pairs = draw(st.permutations(pairs))
    text = ws + _obj(pairs, ws) + ws
    if draw(st.integers(0, 9)) == 5:  # a piece no JSON string may hold, after one of the quotes
        quotes = [i for i, ch in enumerate(text) if ch == '"']
        if quotes:
            at = draw(st.sampled_from(quotes)) + 1
            text = text[:at] + draw(st.sampled_from(BAD_STRING_PIECES)) + text[at:]
    body = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 5:  # damage: invalid UTF-8 or stray bytes inside the text
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at]
            + draw(
                st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe9", b'"'])
            )
            + body[at:]
        )
    if draw(st.integers(0, 19)) == 5:
        body = body + draw(st.sampled_from([b"x", b",", b"}"]))
    return body


def _reference(body: bytes) -> tuple[str, list[Any], dict[str, Any]] | None:
    """What the object path stores for a page: the events' text, their ids and the envelope; None where
    that path would not take the page as a plain page of objects."""
    try:
        parsed = loads_page(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("events"), list):
        return None
    evs = parsed["events"]
    if not all(isinstance(e, dict) for e in evs):
        return None
    try:
        text = "\n".join(encode_event(e) for e in evs)
    except (ValueError, TypeError, RecursionError):
        return None
    return text, [e.get("id") for e in evs], {**parsed, "events": []}


def _check(body: bytes) -> bool:
    """The transcoder's answer is the reference's; returns whether it answered."""
    got = transcode_page(body)
    ref = _reference(body)
    if got is None:
        return False
    assert ref is not None, body
    encoded, envelope = got
    text, ref_ids, ref_envelope = ref
    assert encoded.text == text
    assert encoded.ids == ref_ids
    assert all(type(i) is int for i in encoded.ids if i is not None)
    assert encoded.payloads() == (text.split("\n") if text else [])
    assert loads_page(envelope) == ref_envelope
    return True


@settings(max_examples=examples(500), deadline=None)
@given(pages())
@example(
    b'{"events": [{"id": 1, "a": "\\u00E9\\/\\ud83d\\ude00"}], "next_checkpoint": 2, "remaining_count": 0}'
)
@example(b'{"events": [{"a": 1, "a": 2}], "remaining_count": 0}')
@example(b'{"events": [{"id": 1.0}], "remaining_count": 0}')
@example(b'{"events": [{"n": 12345678901234567890}], "remaining_count": 0}')
@example(b'{"events": [{"n": 1e400}], "remaining_count": 0}')
@example(b'{"events": [{"s": "\\ud800"}], "remaining_count": 0}')
@example(b'{"events": [], "events": [{"id": 1}], "remaining_count": 0}')
@example(b'{"\\u0065vents": [{"id": 1}], "remaining_count": 0}')
@example(b'\xef\xbb\xbf{"events": [], "remaining_count": 0}')
def test_transcoder_is_the_object_path(body: bytes) -> None:
    _check(body)


plain_ids = st.integers(-(10**18) + 1, 10**18 - 1) | st.none()
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**18) + 1, 10**18 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(
        st.tuples(plain_ids, st.dictionaries(st.text(max_size=5), plain_values, max_size=5)), max_size=5
    ),
    st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":")}]),
)
def test_plain_pages_take_the_fast_path(
    evs: list[tuple[int | None, dict[str, Any]]], style: dict[str, Any]
) -> None:
    """What an API sends in practice (objects with an integer id, plain values, any formatting) is taken
    by the transcoder, not left to the parser: the fast path is the common one."""
    objs = [{**e, "id": i} for i, e in evs]
    body = json.dumps({"events": objs, "next_checkpoint": 5, "remaining_count": 0}, **style).encode()
    assert _check(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [{"a": 1, "a": 2}], "remaining_count": 0}',  # repeated key
        b'{"events": [{"n": 1234567890123456789}], "remaining_count": 0}',  # 19 digits
        b'{"events": [{"n": 1e400}], "remaining_count": 0}',  # not finite once parsed
        b'{"events": [{"n": NaN}], "remaining_count": 0}',
        b'{"events": [{"s": "\\udc00"}], "remaining_count": 0}',  # lone surrogate
        b'{"events": [{"s": "\xff"}], "remaining_count": 0}',  # invalid UTF-8
        b'{"events": [{"s": "a\x01"}], "remaining_count": 0}',  # raw control character
        b'{"events": [{"id": "x"}], "remaining_count": 0}',  # a string id
        b'{"events": [{"id": 1.5}], "remaining_count": 0}',
        b'{"events": [1], "remaining_count": 0}',  # not an object
        b'{"events": {}, "remaining_count": 0}',
        b'[{"events": []}]',
        b"{}",
        b'{"events": [], "events": [], "remaining_count": 0}',
        b'{"events": [{"a": 1}], "remaining_count": 0} x',
        b'{"events": [{"a": 1},], "remaining_count": 0}',
    ],
)
def test_what_is_left_to_the_parser(body: bytes) -> None:
    assert transcode_page(body) is None
    _check(body)


def test_limits_are_left_to_the_parser() -> None:
    deep = b"[" * 300 + b"]" * 300
    wide = b"{" + b",".join(b'"k%d": 1' % i for i in range(300)) + b"}"
    for ev in (b'{"d": ' + deep + b"}", wide):
        body = b'{"events": [' + ev + b'], "remaining_count": 0}'
        assert transcode_page(body) is None
        assert _reference(body) is not None


def test_encoded_events_read_like_the_list_they_replace() -> None:
    body = b'{"events": [{"id": 3, "a": "x"}, {"b": [1.5, null]}, {"id": 9}], "remaining_count": 0}'
    got = transcode_page(body)
    assert got is not None
    evs = got[0]
    assert len(evs) == 3 and evs.ids == [3, None, 9]
    assert evs == [{"id": 3, "a": "x"}, {"b": [1.5, None]}, {"id": 9}]
    assert evs[1] == {"b": [1.5, None]} and evs[-1] == {"id": 9} and evs[:1] == [{"id": 3, "a": "x"}]
    assert evs[0] == {"id": 3, "a": "x"} and evs[-3] == evs[0]
    with pytest.raises(IndexError):
        evs[3]
    kept = evs.select([True, False, True])
    assert kept.text == '{"id": 3, "a": "x"}\n{"id": 9}' and kept.ids == [3, 9]
    assert kept.payloads() == ['{"id": 3, "a": "x"}', '{"id": 9}']
    assert evs.select([True, True, True]) is evs
    empty = evs.select([False, False, False])
    assert len(empty) == 0 and empty.payloads() == [] and empty == []
    assert EncodedEvents.from_payloads(['{"a": 1}'], [None]) == [{"a": 1}]
    with pytest.raises(ValueError):
        EncodedEvents("x", [1], [])


def test_switched_off_with_the_c_encoder() -> None:
    code = (
        "from siemconn.events import transcode as t; "
        'assert not t.TRANSCODER and t.transcode_page(b\'{"events": [], "remaining_count": 0}\') is None; '
        "print('ok')"
    )
    for setting in ("ujson", "off"):
        env = {**os.environ, "SIEMCONN_FAST_ENCODER": setting}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "ok"


def test_empty_events() -> None:
    body = b' {"remaining_count": 0, "events": [ ], "next_checkpoint": null} '
    got = transcode_page(body)
    assert got is not None and len(got[0]) == 0 and got[0].text == ""
