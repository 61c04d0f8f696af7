"""siemconn.rux.salvage: a page the JSON parser rejected, split into its events: the good ones kept, the bad
ones with their raw bytes, and what cannot be split refused."""

from __future__ import annotations

import orjson
import pytest

from siemconn.rux.page import loads_page
from siemconn.rux.salvage import salvage_page


def _body(*elements: bytes, nxt: bytes = b"9") -> bytes:
    return (
        b'{"events": [' + b", ".join(elements) + b'], "next_checkpoint": ' + nxt + b', "remaining_count": 0}'
    )


def test_salvage_keeps_good_events_and_the_raw_bytes_of_bad_ones() -> None:
    bad_utf8 = b'{"id": 2, "x": "\xff\xfe"}'
    too_deep = b'{"id": 4, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    body = _body(b'{"id": 1, "big": 123456789012345678901234}', bad_utf8, b"7", too_deep, b'{"id": 5}')
    with pytest.raises(ValueError):
        orjson.loads(body)
    s = salvage_page(body, loads_page)
    assert s is not None
    assert s.events == [{"id": 1, "big": 123456789012345678901234}, {"id": 5}]  # big ints kept exactly
    assert s.envelope["next_checkpoint"] == 9 and s.envelope["remaining_count"] == 0
    assert [(r.reason, r.event_id, r.raw) for r in s.rejects] == [
        ("invalid_utf8", "2", bad_utf8),
        ("not_an_object", None, b"7"),
        ("too_deep", None, too_deep),
    ]


def test_salvage_refuses_what_it_cannot_split() -> None:
    assert salvage_page(b"<html>502</html>", loads_page) is None
    assert salvage_page(b'{"next_checkpoint": 3, "remaining_count": 0}', loads_page) is None
    assert salvage_page(_body(b'{"id": 1}', b"", b'{"id": 2}'), loads_page) is None  # [a, , b]
    assert salvage_page(b'{"events": [{"id": 1}], "next_checkpoint": \xff}', loads_page) is None
    empty = salvage_page(_body(), loads_page)
    assert empty is not None and empty.events == [] and empty.rejects == []


def test_salvage_finds_the_top_level_events_only() -> None:
    body = b'{"meta": {"events": ["not these"]}, "events": [{"id": 1, "events": [2]}, "\xff"], "remaining_count": 0}'
    s = salvage_page(body, loads_page)
    assert (
        s is not None
        and s.events == [{"id": 1, "events": [2]}]
        and s.envelope["meta"]["events"] == ["not these"]
    )
    assert [r.raw for r in s.rejects] == [b'"\xff"']
