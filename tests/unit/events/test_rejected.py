"""siemconn.events.rejected: `raw_json`, the text a rejected event is kept as, is json.dumps at any depth."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.poison_api import nested

from siemconn.events.rejected import raw_json


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1, "s": 'caf\u00e9 \u4e2d\n"q"', "f": 1.5, "n": None, "t": True, "l": [1, [2, {}], []]},
        [],
        "x",
        2**70,
        {"nan": float("nan"), "inf": float("inf")},
    ],
)
def test_raw_json_is_json_dumps(value: Any) -> None:
    assert raw_json(value).decode() == json.dumps(value)


def test_raw_json_has_no_depth_limit() -> None:
    text = raw_json(nested(20_000)).decode()
    assert text.startswith('{"a": {"a": ') and text.endswith("{}" + "}" * 19_999)
