"""The lockdown diff (pure): entries that appear, leave, reappear or change fields."""

from __future__ import annotations

from typing import Any

from siemconn.rux.lockdown import (
    CHANGED,
    CHANGED_FIELDS,
    MARKER,
    OBSERVED_AT,
    UNLOCKED,
    diff,
    dump_state,
    identity,
    load_state,
)

T1, T2, T3 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z", "2026-12-01T10:10:00Z"


def entry(entity_id: int, etype: str = "host", **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": entity_id * 10,
        "type": etype,
        "entity_id": entity_id,
        "entity_name": f"host-{entity_id}",
        "lock_event_timestamp": "2026-12-01T09:00:00Z",
        "locked_by": "john.doe@net.co",
        "certainty": 80,
        "unlock_event_timestamp": "2026-12-02T09:00:00Z",
    }
    e.update(over)
    return e


def test_first_poll_every_entry_appears_as_returned() -> None:
    a, b = entry(1), entry(2, "account")
    d = diff({}, [a, b], T1)
    assert d.events == [a, b]  # the entries exactly as returned, nothing added
    assert (d.locked, d.changed, d.unlocked) == (2, 0, 0)
    assert set(d.new_state) == {"host:1", "account:2"}


def test_same_list_again_is_no_change() -> None:
    a, b = entry(1), entry(2)
    state = diff({}, [a, b], T1).new_state
    d = diff(state, [dict(b), dict(a)], T2)  # order does not matter
    assert d.events == [] and d.new_state == state


def test_entry_that_leaves_is_the_last_seen_entry_plus_markers() -> None:
    a, b = entry(1), entry(2)
    state = diff({}, [a, b], T1).new_state
    d = diff(state, [b], T2)
    assert d.events == [{**a, MARKER: UNLOCKED, OBSERVED_AT: T2}]
    assert (d.locked, d.changed, d.unlocked) == (0, 0, 1)
    assert set(d.new_state) == {"host:2"}
    # everything leaves
    d2 = diff(d.new_state, [], T3)
    assert d2.events == [{**b, MARKER: UNLOCKED, OBSERVED_AT: T3}] and d2.new_state == {}


def test_entry_that_reappears_is_locked_again() -> None:
    a = entry(1)
    s1 = diff({}, [a], T1).new_state
    s2 = diff(s1, [], T2).new_state
    again = entry(1, id=99, lock_event_timestamp="2026-12-01T10:04:00Z")
    d = diff(s2, [again], T3)
    assert d.events == [again] and d.locked == 1


def test_field_change_is_one_changed_event_with_the_entry_as_returned_now() -> None:
    a = entry(1)
    state = diff({}, [a], T1).new_state
    extended = entry(1, unlock_event_timestamp="2026-12-03T09:00:00Z", certainty=95)
    d = diff(state, [extended], T2)
    assert d.events == [
        {**extended, MARKER: CHANGED, CHANGED_FIELDS: ["certainty", "unlock_event_timestamp"]}
    ]
    assert (d.locked, d.changed, d.unlocked) == (0, 1, 0)
    assert d.new_state["host:1"] == extended  # the leave event will carry the newest version
    left = diff(d.new_state, [], T3).events
    assert left == [{**extended, MARKER: UNLOCKED, OBSERVED_AT: T3}]


def test_added_and_removed_fields_are_changes() -> None:
    a = entry(1)
    state = diff({}, [a], T1).new_state
    b = {k: v for k, v in a.items() if k != "certainty"}
    b["note"] = "new field"
    d = diff(state, [b], T2)
    assert d.events[0][CHANGED_FIELDS] == ["certainty", "note"]


def test_mixed_poll_orders_unlocked_then_changed_and_locked_in_answer_order() -> None:
    state = diff({}, [entry(1), entry(2), entry(3)], T1).new_state
    d = diff(state, [entry(4), entry(2, certainty=1), entry(3)], T2)
    assert [(e["entity_id"], e.get(MARKER)) for e in d.events] == [(1, UNLOCKED), (4, None), (2, CHANGED)]


def test_same_entity_id_of_two_types_are_two_entries() -> None:
    d = diff({}, [entry(7, "host"), entry(7, "account")], T1)
    assert d.locked == 2 and set(d.new_state) == {"host:7", "account:7"}


def test_entries_without_identity_fields_and_duplicates_are_kept() -> None:
    odd: list[Any] = [{"name": "no ids"}, "a string", {"name": "no ids"}, entry(1), entry(1)]
    d = diff({}, odd, T1)
    assert d.locked == 5 and len(d.new_state) == 5
    assert d.events[1] == {"entry": "a string"}  # a non-object entry is wrapped, never dropped
    again = diff(d.new_state, odd, T2)
    assert again.events == []
    gone = diff(d.new_state, [], T3)
    assert gone.unlocked == 5
    assert {MARKER: UNLOCKED, OBSERVED_AT: T3, "entry": "a string"} in gone.events


def test_identity() -> None:
    assert identity(entry(5, "account")) == "account:5"
    assert identity({"type": "host", "entity_id": "abc"}) == "host:abc"
    assert identity({"type": "host", "entity_id": True}).startswith("json:")
    assert identity({"b": 1, "a": 2}) == identity({"a": 2, "b": 1})


def test_state_round_trip() -> None:
    state = diff({}, [entry(1, entity_name="mac-élodie"), entry(2)], T1).new_state
    assert load_state(dump_state(state)) == state
    assert load_state(None) == {} and load_state("") == {}
    assert (
        diff(load_state(dump_state(state)), [entry(1, entity_name="mac-élodie"), entry(2)], T2).events == []
    )
