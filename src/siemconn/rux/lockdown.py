"""The lockdown stream as changes: a pure diff between the last-seen list and the list polled now.

`GET /api/<version>/lockdown` answers a bare array of the entities now in lockdown, with no cursor.
Forwarding the whole list at every poll would repeat the same entries all day, so siemconn forwards
changes only:

* **locked**: an entry that was not in the last-seen list: one event, the entry exactly as returned.
* **changed**: an entry still listed whose fields differ from the last-seen version (for example a
  lockdown extended: a new ``unlock_event_timestamp``): one event, the entry as returned now plus
  ``"siemconn_lockdown": "changed"`` and ``"siemconn_changed_fields"`` (the sorted names of the fields
  that were added, removed or changed). A field change *is* a change event: what the SIEM last received
  then always matches what the tenant shows.
* **unlocked**: an entry of the last-seen list that is no longer returned: one event, the last-seen entry
  as it was returned plus ``"siemconn_lockdown": "unlocked"`` and ``"siemconn_observed_at"`` (UTC time of
  the poll that no longer listed it; the real unlock happened between the previous poll and then).

An entry is identified by its entity, ``(type, entity_id)``: the list holds entities, and one entity is
in lockdown at most once. An entry without both fields is identified by its whole JSON text (so it can
only appear and leave). Two entries with the same identity in one answer are told apart by their order.

Invariants: `diff(state, entries)` is pure; applying its events to `state` gives `new_state`; the state
is committed with the events in one transaction (siemconn.queue), so a restart or a kill neither repeats
nor loses a change: a poll that was not committed is simply diffed again against the same state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHANGED",
    "CHANGED_FIELDS",
    "MARKER",
    "OBSERVED_AT",
    "UNLOCKED",
    "LockdownDiff",
    "diff",
    "dump_state",
    "identity",
    "load_state",
]

MARKER = "siemconn_lockdown"
CHANGED = "changed"
UNLOCKED = "unlocked"
CHANGED_FIELDS = "siemconn_changed_fields"
OBSERVED_AT = "siemconn_observed_at"

State = dict[str, Any]  # identity -> the entry as last returned (any JSON value)


@dataclass(frozen=True)
class LockdownDiff:
    """The change events of one poll, in order (unlocked, then changed and locked in answer order),
    and the state to commit with them."""

    events: list[dict[str, Any]]
    new_state: State
    locked: int
    changed: int
    unlocked: int


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def identity(entry: Any) -> str:
    """The identity of an entry: "type:entity_id", else its canonical JSON text."""
    if isinstance(entry, dict):
        etype, eid = entry.get("type"), entry.get("entity_id")
        if isinstance(etype, str) and isinstance(eid, int | str) and not isinstance(eid, bool):
            return f"{etype}:{eid}"
    return "json:" + _canonical(entry)


def _as_object(entry: Any) -> dict[str, Any]:
    """An entry as an object to add marker fields to (a non-object entry is wrapped under "entry")."""
    return dict(entry) if isinstance(entry, dict) else {"entry": entry}


def _changed_fields(old: Any, new: Any) -> list[str]:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return ["entry"]
    names = set(old) | set(new)
    return sorted(
        n for n in names if n not in old or n not in new or _canonical(old[n]) != _canonical(new[n])
    )


def diff(state: Mapping[str, Any], entries: Sequence[Any], observed_at: str) -> LockdownDiff:
    """The changes from the last-seen `state` to the polled `entries` (see the module docstring)."""
    current: State = {}
    for entry in entries:
        base = identity(entry)
        ident, n = base, 1
        while ident in current:
            n += 1
            ident = f"{base}#{n}"
        current[ident] = entry
    events: list[dict[str, Any]] = []
    unlocked = changed = locked = 0
    for ident, old in state.items():
        if ident not in current:
            ev = _as_object(old)
            ev[MARKER] = UNLOCKED
            ev[OBSERVED_AT] = observed_at
            events.append(ev)
            unlocked += 1
    for ident, entry in current.items():
        if ident not in state:
            events.append(entry if isinstance(entry, dict) else {"entry": entry})
            locked += 1
        elif _canonical(state[ident]) != _canonical(entry):
            ev = _as_object(entry)
            ev[MARKER] = CHANGED
            ev[CHANGED_FIELDS] = _changed_fields(state[ident], entry)
            events.append(ev)
            changed += 1
    return LockdownDiff(events, current, locked, changed, unlocked)


def dump_state(state: Mapping[str, Any]) -> str:
    """The state as stored in the queue file (JSON text)."""
    return json.dumps(dict(state), separators=(",", ":"), ensure_ascii=False)


def load_state(text: str | None) -> State:
    """The stored state (None: never polled, an empty state)."""
    if not text:
        return {}
    value = json.loads(text)
    return dict(value) if isinstance(value, dict) else {}
