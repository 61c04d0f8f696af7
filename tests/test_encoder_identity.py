"""The fast event encoder (ujson, routed) is byte-identical to json.dumps over the whole JSON value domain.

Each strategy aims at a place where a second encoder could differ: float formatting (exponents, -0.0,
subnormals, the 1e-4 / 1e16 switch between fixed and exponent notation, neighbours of powers of ten),
NaN and the infinities, integers of any size, every control character, DEL, U+2028/U+2029, non-BMP
characters and lone surrogates, empty and deep containers, and json.dumps' non-str key types.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from siemconn.queue import encoder
from siemconn.queue.encoder import encode_event, encode_event_fast, encode_event_stdlib, encode_events

fast = encode_event_fast

SPECIAL_CHARS = (
    [chr(c) for c in range(0x20)]
    + ["\x7f", "\x80", "\x9f", "\xa0", "\xff", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff"]
    + ["\ud800", "\udbff", "\udc00", "\udfff", "\U00010000", "\U0001f600", "\U0010ffff"]
    + ['"', "\\", "/", "<", ">", "&", "'", "e", "-", "0", "9"]
)
# any code point, surrogates included, with the special ones often
chars = st.sampled_from(SPECIAL_CHARS) | st.integers(0, 0x10FFFF).map(chr)
texts = st.lists(chars, max_size=30).map("".join)


def _decimal_floats() -> st.SearchStrategy[float]:
    """Floats written as digits x 10^exp over the whole exponent range, and their float neighbours."""
    base = st.builds(
        lambda d, e: float(f"{d}e{e}"),
        st.integers(1, 10**17),
        st.integers(-345, 310),
    )
    around = st.builds(
        lambda x, up: math.nextafter(x, math.inf if up else -math.inf),
        st.sampled_from([10.0**k for k in range(-20, 24)] + [1e-4, 1e16, 5e-324, 2.2250738585072014e-308]),
        st.booleans(),
    )
    return (base | around).map(lambda x: x if math.isfinite(x) else 0.0)


floats = (
    st.floats(allow_nan=True, allow_infinity=True)
    | _decimal_floats()
    | _decimal_floats().map(lambda x: -x)
    | st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e-5, 1.5e-7, 9.999999999999999e-5])
)
integers = (
    st.integers()
    | st.integers(-(2**200), 2**200)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**100, -(10**100)])
)
scalars = st.none() | st.booleans() | integers | floats | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(texts, inner, max_size=6),
    max_leaves=50,
)
keys = texts | integers | floats | st.booleans() | st.none()


@settings(max_examples=1000, deadline=None)
@given(values)
@example(1e-05)
@example({"a": [1.5e-07, "\x7f"]})
@example({"\x7f": 1})
@example("\ud800\udc00\udfff")
@example([[], {}, [[]], {"": {}}])
def test_fast_encoder_is_json_dumps_on_any_json_value(value: Any) -> None:
    assert fast(value) == json.dumps(value)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
@example({1e-05: 1, -0.0: 2, math.nan: 3, math.inf: 4, True: 5, None: 6, 2**70: 7})
def test_fast_encoder_is_json_dumps_for_every_key_type(value: dict[Any, Any]) -> None:
    assert fast(value) == json.dumps(value)


@settings(max_examples=1000, deadline=None)
@given(floats)
def test_fast_encoder_floats(x: float) -> None:
    assert fast(x) == json.dumps(x)
    assert fast([x, {"k": x}]) == json.dumps([x, {"k": x}])


@pytest.mark.parametrize("code", [*range(0x20), 0x7F, 0x2028, 0x2029, 0xD800, 0xDFFF, 0x1F600])
def test_fast_encoder_every_control_char_del_and_separators(code: int) -> None:
    c = chr(code)
    for value in (c, f"a{c}b", {c: c}, [c, 1e-05]):
        assert fast(value) == json.dumps(value)


def test_fast_encoder_exponent_text_in_strings_is_left_alone() -> None:
    """Text that looks like ujson's short exponent only routes to the stdlib encoder; bytes stay the same."""
    for value in ("1e-5", {"a": "x1e-5"}, {"1e-5": "9e-4a"}, ["1e-5", 1e-5], "3fa9e-4b1c"):
        assert fast(value) == json.dumps(value)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_containers(kind: str) -> None:
    """At every depth the fast path gives json.dumps' bytes, or raises RecursionError where json.dumps
    does (ujson alone would nest to 1024 levels)."""
    for depth in (0, 1, 2, 10, 100, 500, 899, 900, 901, 990, 1000, 1010, 1023, 1024, 1100, 3000):
        v: Any = 1
        for _ in range(depth):
            v = [v] if kind == "list" else {"k": v}
        try:
            expected: str | None = json.dumps(v)
        except RecursionError:
            expected = None
        if expected is not None:
            assert fast(v) == expected, depth
        else:
            with pytest.raises(RecursionError):
                fast(v)


def test_many_brackets_shallow_is_still_identical() -> None:
    v = {"a": [[] for _ in range(2000)], "b": "[{" * 1000}
    assert fast(v) == json.dumps(v)


def test_unencodable_values_raise_what_json_dumps_raises() -> None:
    for value in ({"a": b"x"}, {"a": {1, 2}}, {"a": object()}):
        with pytest.raises(TypeError) as fast_err:
            fast(value)
        with pytest.raises(TypeError) as json_err:
            json.dumps(value)
        assert str(fast_err.value) == str(json_err.value)


def _page_matches(events: list[Any]) -> None:
    """encode_events gives json.dumps of every event and their newline-joined text, or None (one at a time)."""
    got = encode_events(events)
    if got is not None:
        payloads, data = got
        assert payloads == [json.dumps(e) for e in events]
        assert data == "\n".join(payloads)


@settings(max_examples=500, deadline=None)
@given(st.lists(values, max_size=8))
@example([{"a": 1e-05}, {"b": 2}])
@example([{"a": 1}, 1e-05])
@example([{"a": "x"}, {"b": "\x7f"}])
@example([{"a": "9e-4a", "b": "k8s-node-7"}, "1e-5", {"1e-5": "x"}])
def test_page_encoder_is_json_dumps_per_event(events: list[Any]) -> None:
    _page_matches(events)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(keys, values, max_size=4), max_size=6))
@example([{"a": 1}, {math.nan: 1}])
@example([{math.inf: 1}, {-math.inf: 1}])
@example([{1e-05: 1}])
def test_page_encoder_every_key_type(events: list[Any]) -> None:
    _page_matches(events)


def test_page_encoder_leaves_the_pages_it_cannot_vouch_for_to_encode_event() -> None:
    """Where one event would be routed or refused, the whole page takes the one-at-a-time path."""
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    for page in (
        [{"a": 1}, {"b": "\x7f"}],
        [{"a": 1}, {"b": 1.5e-07}],
        [{"a": 1}, {math.nan: 1}],
        [{"a": 1}, {"b": b"x"}],
        [{"a": 1}, deep],
    ):
        assert encode_events(page) is None
    assert encode_events([{"a": "k8s-node-7"}, {"b": [1.5e-4, 1e-10, 2.5e16]}]) is not None
    assert encode_events([]) == ([], "")


def test_encode_event_is_the_fast_path_by_default() -> None:
    """ujson is a declared dependency: the default suite runs with the fast path on (the identity tests
    above would otherwise test the stdlib encoder against itself)."""
    assert encoder.FAST_ENCODER
    assert encode_event is encode_event_fast
    assert encode_event_fast is not encode_event_stdlib


def test_switch_off_uses_the_stdlib_encoder() -> None:
    code = (
        "import json; from siemconn.queue import encoder as m; "
        "assert not m.FAST_ENCODER and m.encode_event is m.encode_event_stdlib; "
        "v = {'a': '\\x7f', 'b': 1e-05}; assert m.encode_event(v) == json.dumps(v); "
        "assert m.encode_events([v]) is None; print('ok')"
    )
    env = {**os.environ, "SIEMCONN_FAST_ENCODER": "off"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
