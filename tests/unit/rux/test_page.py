"""siemconn.rux.page: page loading keeps every integer exact (big integers take the exact parser, digit runs
inside strings do not)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import examples

from siemconn.rux.page import has_long_digit_run, loads_page

_digits = st.sampled_from(["1", "9", "0", "a", " ", "\u0660", "-", ".", "e", ":", "12345678901234567"])
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(_digits, max_size=12).map("".join)
)
_docs = st.recursive(
    _numbers,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.lists(_digits, max_size=4).map("".join), inner, max_size=5)
    ),
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=examples(400), deadline=None)
@given(_docs, st.sampled_from([None, 0, 2]))
def test_page_parser_keeps_big_integers_exact(doc: Any, indent: int | None) -> None:
    raw = json.dumps({"events": [doc]}, indent=indent, ensure_ascii=False).encode()
    assert _same(loads_page(raw), json.loads(raw))
    if re.search(rb"\d{19}", raw) is None:
        assert not has_long_digit_run(raw)


def test_long_digit_runs_inside_strings_use_the_fast_parser() -> None:
    assert has_long_digit_run(b'{"id": 18446744073709551616}')
    assert has_long_digit_run(b"[-18446744073709551616]")
    assert has_long_digit_run(b"18446744073709551616")
    assert not has_long_digit_run(b'{"id": 184467440737095516, "x": "\xd9\xa0"}')
    assert not has_long_digit_run(b'{"sha": "ab18446744073709551616", "h": ["18446744073709551616"]}')
    assert has_long_digit_run(b'{"sha": "ab18446744073709551616", "n": 18446744073709551616}')
    # a hex hash's "e" followed by 19 digits is inside a string; exponents and fractions of numbers are not
    assert not has_long_digit_run(b'{"ja3": ["f61bf1e71de6e6306406942102430844"]}')
    assert not has_long_digit_run(b'{"h": "x-1.5e+18446744073709551616"}')
    assert has_long_digit_run(b'{"f": 1.5e18446744073709551616}')
    assert has_long_digit_run(b'{"f": [0.18446744073709551616]}')
    assert has_long_digit_run(b'{"f":-1E+18446744073709551616}')
    assert has_long_digit_run(b'{"f":\n-18446744073709551616}')


def test_integers_beyond_64_bits_keep_their_exact_value() -> None:
    """orjson would turn 2**64 into 1.8446744073709552e+19; the payload must stay the API's number."""
    from siemconn.events.encoder import encode_event
    from siemconn.rux.page import loads_page

    raw = b'{"events": [{"id": 1, "big": 18446744073709551616, "neg": -9223372036854775809, "f": 1E5}]}'
    ev = loads_page(raw)["events"][0]
    assert ev["big"] == 2**64 and isinstance(ev["big"], int) and ev["neg"] == -(2**63) - 1
    assert encode_event(ev) == json.dumps(json.loads(raw)["events"][0])
    assert loads_page(b'{"events": [{"id": 5, "x": 0.1}]}') == {"events": [{"id": 5, "x": 0.1}]}
