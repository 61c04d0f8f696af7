"""Unit tests of the lenient envelope rules (siemconn.rux.envelope); the service-level test is
tests/e2e/test_envelope_leniency.py."""

from __future__ import annotations

from typing import Any

import pytest

from siemconn.rux.envelope import find_events, number_of, read_envelope, string_ids


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (6, 6),
        (-3, -3),
        (6.0, 6),
        ("6", 6),
        (" 6 ", 6),
        ("+6", 6),
        ("6.0", 6),
        ("1e3", 1000),
        (6.5, None),
        ("6.5", None),
        (True, None),
        (False, None),
        (None, None),
        ("", None),
        ("six", None),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
        (float("nan"), None),
        ([6], None),
        ({"v": 6}, None),
        ("9" * 41, None),
    ],
)
def test_number_of_takes_only_what_is_a_number_without_doubt(value: Any, number: int | None) -> None:
    assert number_of(value) == number


@pytest.mark.parametrize(
    ("body", "checkpoint", "remaining", "kinds", "ambiguous"),
    [
        ({"next_checkpoint": 7, "remaining_count": 3}, 7, 3, [], False),
        ({"next_checkpoint": None, "remaining_count": None}, None, 0, [], False),
        (
            {"next_checkpoint": "7", "remaining_count": "3"},
            7,
            3,
            ["next_checkpoint:string", "remaining_count:string"],
            False,
        ),
        ({"next_checkpoint": 7}, 7, 0, ["remaining_count:missing"], False),
        ({"remaining_count": 0}, None, 0, ["next_checkpoint:missing"], False),
        ({"next_checkpoint": 7, "remaining_count": -1}, 7, 0, ["remaining_count:negative"], False),
        ({"next_checkpoint": 7, "remaining_count": "-1"}, 7, 0, ["remaining_count:negative"], False),
        ({"next_checkpoint": 7, "remaining_count": 2.5}, 7, 0, ["remaining_count:float"], True),
        ({"next_checkpoint": [7], "remaining_count": 0}, None, 0, ["next_checkpoint:array"], True),
        ({"next_checkpoint": {"id": 7}, "remaining_count": 0}, None, 0, ["next_checkpoint:object"], True),
        (
            {"nextCheckpoint": 7, "Remaining-Count": 2},
            7,
            2,
            ["next_checkpoint:renamed", "remaining_count:renamed"],
            False,
        ),
        ({"next_checkpoint": 7, "nextCheckpoint": 9, "remaining_count": 0}, 7, 0, [], False),
    ],
)
def test_read_envelope(
    body: dict[str, Any], checkpoint: int | None, remaining: int, kinds: list[str], ambiguous: bool
) -> None:
    env = read_envelope(body)
    assert (env.next_checkpoint, env.remaining) == (checkpoint, remaining)
    assert [d.kind for d in env.deviations] == kinds
    assert env.ambiguous is ambiguous
    assert all(d.value and d.meaning for d in env.deviations)


@pytest.mark.parametrize(
    ("body", "found", "kind"),
    [
        ({"events": [{"id": 1}]}, [{"id": 1}], None),
        ({"events": []}, [], None),
        ({"events": [1, {"id": 1}]}, [1, {"id": 1}], None),  # the documented place: non-objects quarantined
        ([{"id": 1}], [{"id": 1}], None),
        ({"results": [{"id": 1}], "next_checkpoint": 2}, [{"id": 1}], "events:renamed"),
        ({"events": {"items": [{"id": 1}]}}, [{"id": 1}], "events:wrapped"),
        ({"data": {"events": [{"id": 1}], "next_checkpoint": 2}}, [{"id": 1}], "envelope:wrapped"),
        ({"errors": ["rate limited"]}, None, None),  # an error answer is not a page
        ([1, 2], None, None),
        ({"a": [{"id": 1}], "b": [{"id": 2}]}, None, None),  # two candidates: ambiguous
        ({"events": {"a": [], "b": []}}, None, None),
        ({"events": "x"}, None, None),
        ({"next_checkpoint": 5, "remaining_count": 0}, None, None),
        ("text", None, None),
    ],
)
def test_find_events(body: Any, found: list[Any] | None, kind: str | None) -> None:
    got = find_events(body)
    if found is None:
        assert got is None
        return
    assert got is not None
    events, _envelope, dev = got
    assert events == found
    assert (dev.kind if dev else None) == kind


def test_string_ids_count_for_the_checkpoint_bound() -> None:
    numbers, dev = string_ids([1, "5", None, "x", 7.0])
    assert numbers == [5, 7]
    assert dev is not None and dev.kind == "event_id:str" and not dev.ambiguous
    assert string_ids([1, 2, None]) == ([], None)
