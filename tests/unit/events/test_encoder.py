"""The fast event encoders (C, and ujson routed) are byte-identical to json.dumps over the whole JSON value
domain.

Each strategy aims at a place where a second encoder could differ: float formatting (exponents, -0.0,
subnormals, the 1e-4 / 1e16 switch between fixed and exponent notation, neighbours of powers of ten),
NaN and the infinities, integers of any size, every control character, DEL, U+2028/U+2029, non-BMP
characters and lone surrogates, empty and deep containers, and json.dumps' non-str key types.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.examples import examples

from siemconn.events import encoder, transcode
from siemconn.events.encoder import (
    Encoder,
    encode_event,
    encode_event_c,
    encode_event_fast,
    encode_event_stdlib,
    encode_event_ujson,
    encode_events,
    encode_events_c,
    encode_events_ujson,
)

# every fast encoder this build has; the C one must be there wherever a C compiler is (see test_c_built)
FAST = {"c": encode_event_c, "ujson": encode_event_ujson}
ENCODERS = [pytest.param(f, id=name) for name, f in FAST.items() if f is not None]
BUILT = [f for f in FAST.values() if f is not None]


def _same(value: Any) -> None:
    """Every fast encoder gives json.dumps(value) (one generated value checks them all: generating is
    what costs here)."""
    want = json.dumps(value)
    for fast in BUILT:
        assert fast(value) == want, fast


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


@settings(max_examples=examples(1000), deadline=None)
@given(values)
@example(1e-05)
@example({"a": [1.5e-07, "\x7f"]})
@example({"\x7f": 1})
@example("\ud800\udc00\udfff")
@example([[], {}, [[]], {"": {}}])
def test_fast_encoders_are_json_dumps_on_any_json_value(value: Any) -> None:
    _same(value)


@settings(max_examples=examples(500), deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
@example({1e-05: 1, -0.0: 2, math.nan: 3, math.inf: 4, True: 5, None: 6, 2**70: 7})
def test_fast_encoders_are_json_dumps_for_every_key_type(value: dict[Any, Any]) -> None:
    _same(value)


@settings(max_examples=examples(1000), deadline=None)
@given(floats)
@pytest.mark.parametrize("fast", ENCODERS)
def test_fast_encoder_floats(fast: Encoder, x: float) -> None:
    assert fast(x) == json.dumps(x)
    assert fast([x, {"k": x}]) == json.dumps([x, {"k": x}])


@pytest.mark.parametrize("fast", ENCODERS)
@pytest.mark.parametrize("code", [*range(0x20), 0x7F, 0x2028, 0x2029, 0xD800, 0xDFFF, 0x1F600])
def test_fast_encoder_every_control_char_del_and_separators(fast: Encoder, code: int) -> None:
    c = chr(code)
    for value in (c, f"a{c}b", {c: c}, [c, 1e-05]):
        assert fast(value) == json.dumps(value)


@pytest.mark.parametrize("fast", ENCODERS)
def test_fast_encoder_exponent_text_in_strings_is_left_alone(fast: Encoder) -> None:
    """Text that looks like ujson's short exponent only routes to the stdlib encoder; bytes stay the same."""
    for value in ("1e-5", {"a": "x1e-5"}, {"1e-5": "9e-4a"}, ["1e-5", 1e-5], "3fa9e-4b1c"):
        assert fast(value) == json.dumps(value)


@pytest.mark.parametrize("fast", ENCODERS)
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_containers(fast: Encoder, kind: str) -> None:
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


@pytest.mark.parametrize("fast", ENCODERS)
def test_many_brackets_shallow_is_still_identical(fast: Encoder) -> None:
    v = {"a": [[] for _ in range(2000)], "b": "[{" * 1000}
    assert fast(v) == json.dumps(v)


@pytest.mark.parametrize("fast", ENCODERS)
def test_unencodable_values_raise_what_json_dumps_raises(fast: Encoder) -> None:
    for value in ({"a": b"x"}, {"a": {1, 2}}, {"a": object()}):
        with pytest.raises(TypeError) as fast_err:
            fast(value)
        with pytest.raises(TypeError) as json_err:
            json.dumps(value)
        assert str(fast_err.value) == str(json_err.value)


def _page_matches(events: list[Any]) -> None:
    """Every page encoder gives the newline-joined json.dumps of the events, or None (one at a time)."""
    want = "\n".join(map(json.dumps, events))
    for page in (encode_events_c, encode_events_ujson, encode_events):
        got = page(events)
        assert got is None or got == want, page


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(values, max_size=8))
@example([{"a": 1e-05}, {"b": 2}])
@example([{"a": 1}, 1e-05])
@example([{"a": "x"}, {"b": "\x7f"}])
@example([{"a": "9e-4a", "b": "k8s-node-7"}, "1e-5", {"1e-5": "x"}])
def test_page_encoder_is_json_dumps_per_event(events: list[Any]) -> None:
    _page_matches(events)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.dictionaries(keys, values, max_size=4), max_size=6))
@example([{"a": 1}, {math.nan: 1}])
@example([{math.inf: 1}, {-math.inf: 1}])
@example([{1e-05: 1}])
def test_page_encoder_every_key_type(events: list[Any]) -> None:
    _page_matches(events)


def test_ujson_page_encoder_leaves_the_pages_it_cannot_vouch_for_to_encode_event() -> None:
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
        assert encode_events_ujson(page) is None
    assert encode_events_ujson([{"a": "k8s-node-7"}, {"b": [1.5e-4, 1e-10, 2.5e16]}]) is not None
    assert encode_events_ujson([]) == ""


def test_c_built() -> None:
    """The C encoder and transcoder are optional in the build (setup.py), but wherever a C compiler is there
    they must have been built, or the C tests here and in test_transcode.py would silently test nothing."""
    if shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler here: the package was built without the C encoder")
    assert encoder.C_ENCODER
    assert encode_event_c is not None
    assert transcode.TRANSCODER


needs_c = pytest.mark.skipif(not encoder.C_ENCODER, reason="built without the C encoder")


@needs_c
def test_c_page_encoder_takes_what_ujson_must_route() -> None:
    """The C encoder writes DEL and short negative exponents as json.dumps does, so the pages ujson must
    route stay on the fast path."""
    for page in ([{"a": 1}, {"b": "\x7f"}], [{"a": 1}, {"b": 1.5e-07}], [{"a": [1e-05, -0.0, 1e16]}]):
        assert encode_events_c(page) == "\n".join(map(json.dumps, page))
    assert encode_events_c([]) == ""


@needs_c
def test_c_encoder_returns_none_outside_the_parsed_json_domain() -> None:
    """Tuples, subclasses, non-str keys, bytes and nesting beyond 256 levels are not guessed at: None,
    and encode_event_c then gives json.dumps' bytes or json.dumps' error through the other encoders."""

    class S(str):
        pass

    class D(dict[str, Any]):
        pass

    deep: Any = 1
    for _ in range(257):
        deep = [deep]
    outside: list[Any] = [
        (1, 2),
        {"a": (1,)},
        S("x"),
        {S("k"): 1},
        D(a=1),
        {1: 2},
        {None: 1},
        deep,
        b"x",
        {1, 2},
    ]
    for value in outside:
        assert encode_events_c([{"ok": 1}, value]) is None
    assert encode_event_c is not None
    for value in outside[:-2]:
        assert encode_event_c(value) == json.dumps(value)
    with pytest.raises(TypeError):
        encode_event_c(b"x")


@needs_c
def test_c_encoder_keeps_json_dumps_errors() -> None:
    """An int beyond Python's str digit limit raises json.dumps' ValueError (the queue quarantines it)."""
    big = 10 ** (sys.get_int_max_str_digits() + 1)
    assert encode_event_c is not None
    with pytest.raises(ValueError) as c_err:
        encode_event_c({"n": big})
    with pytest.raises(ValueError) as json_err:
        json.dumps({"n": big})
    assert str(c_err.value) == str(json_err.value)
    assert encode_events_c([{"n": big}]) is None


@needs_c
def test_c_encoder_long_strings_every_kind() -> None:
    """Strings longer than the encoder's chunk, of each str kind, with escapes at the chunk edges."""
    for unit in ("a", "\x7f", "\u00e9", "\u20ac", "\U0001f600", '"\\', "\n\x00"):
        for n in (4095, 4096, 4097, 10000):
            s = (unit * n)[: n + 3]
            assert encode_events_c([s, {s: s}]) == json.dumps(s) + "\n" + json.dumps({s: s})


def test_encode_event_is_the_fast_path_by_default() -> None:
    """ujson is a declared dependency: the default suite runs with the fast path on (the identity tests
    above would otherwise test the stdlib encoder against itself)."""
    assert encoder.FAST_ENCODER
    assert encoder.ENCODER == ("c" if encoder.C_ENCODER else "ujson")
    assert encode_event is encode_event_fast
    assert encode_event_fast is not encode_event_stdlib


def test_switch_off_uses_the_stdlib_encoder() -> None:
    code = (
        "import json; from siemconn.events import encoder as m; "
        "assert not m.FAST_ENCODER and m.encode_event is m.encode_event_stdlib; "
        "v = {'a': '\\x7f', 'b': 1e-05}; assert m.encode_event(v) == json.dumps(v); "
        "assert m.encode_events([v]) is None; print('ok')"
    )
    env = {**os.environ, "SIEMCONN_FAST_ENCODER": "off"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_switch_to_ujson_skips_the_c_encoder() -> None:
    code = (
        "import json; from siemconn.events import encoder as m; "
        "assert m.ENCODER == 'ujson' and m.encode_event is m.encode_event_ujson; "
        "v = [{'a': 'x', 'b': 1.5}]; assert m.encode_events(v) == json.dumps(v[0]); print('ok')"
    )
    env = {**os.environ, "SIEMCONN_FAST_ENCODER": "ujson"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# --- encode_event, the encoder the queue stores with --------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
)


json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8))
def test_encoder_is_byte_identical_to_json_dumps(event: dict[str, Any]) -> None:
    assert encode_event(event) == json.dumps(event)


def test_encoder_special_values() -> None:
    event = {"a": math.nan, "b": -math.inf, "c": "é\x7f\u2028😀", "d": [1.5, True, None], "e": {}}
    assert encode_event(event) == json.dumps(event)
