"""Reading a page's envelope leniently: what an answer that deviates from the documented shape means.

The documented envelope is ``{"events": [...], "next_checkpoint": <int or null>, "remaining_count":
<int>}``. An answer whose events are valid but whose envelope deviates (a missing ``remaining_count``,
``next_checkpoint`` sent as the string ``"6"`` or the float ``6.0``, the events under another key) used
to fail its pull at every tick: none of its events, not even the good ones, was ever delivered. The rules
here turn every deviation into one of two outcomes, each reported as a `Deviation`:

* **unambiguous**: the meaning is certain, and it is used. A numeric string or an integral float is its
  number; ``nextCheckpoint`` or ``Remaining-Count`` are the documented names in another spelling; a missing or negative ``remaining_count`` means nothing is known to remain, which ends this
  tick's paging (the next tick goes on from the stored checkpoint, so nothing is skipped); a missing
  ``next_checkpoint`` is the documented ``null``; events under the only list of the answer, or wrapped in
  one more object, are the page's events.
* **ambiguous**: the value cannot be read as a number without guessing (``true``, ``12.5``, ``"abc"``,
  an object). The value is ignored: the events are queued, the checkpoint advances by the plausibility
  rule from the page's own event ids (`siemconn.rux.cursor`), and this tick's paging ends.

Either way the events of the page are queued and the stream moves on; the caller logs each kind of
deviation once per stream (`rux_envelope_deviation`) and counts every one. What is still an error (the
pull fails, the checkpoint is kept): a body that is not JSON, or one where no list of events can be found
at all, because queueing nothing and moving the checkpoint could skip events.

Invariant: `read_envelope` never raises for a body that is a JSON object or array; `find_events` either
returns the events list and the envelope or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from siemconn.logging import get_logger
from siemconn.ops.metrics import Metrics

__all__ = ["Deviation", "DeviationLog", "Envelope", "find_events", "number_of", "read_envelope", "string_ids"]

log = get_logger("siemconn.rux")

_VALUE_CHARS = 60


@dataclass(frozen=True, slots=True)
class Deviation:
    """One way an answer differs from the documented envelope, and what siemconn made of it."""

    kind: str  # stable "field:what" name, e.g. "next_checkpoint:string" (the metric's label)
    value: str  # the value as sent (cut)
    meaning: str  # what siemconn used instead
    ambiguous: bool


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope as siemconn uses it: the checkpoint (None: none usable), the remaining count, and the
    deviations found. `ambiguous` pages end this tick's paging."""

    next_checkpoint: int | None
    remaining: int
    deviations: tuple[Deviation, ...]

    @property
    def ambiguous(self) -> bool:
        return any(d.ambiguous for d in self.deviations)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _kind_of(value: Any) -> str:
    if value is True or value is False:
        return "boolean"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def number_of(value: Any) -> int | None:
    """The integer `value` means without doubt (an int, an integral float, a string holding one), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            f = float(text)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f.is_integer() else None
    return None


def _squashed(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _with_documented_names(body: dict[str, Any], found: list[Deviation]) -> dict[str, Any]:
    """`body` with ``nextCheckpoint``, ``Remaining-Count`` and the like under their documented names (the
    same letters in another case or separator: unambiguous), each rename reported in `found`."""
    missing = {_squashed(k): k for k in ("next_checkpoint", "remaining_count") if k not in body}
    if not missing:
        return body
    renamed = dict(body)
    for key in body:
        name = missing.get(_squashed(key)) if isinstance(key, str) else None
        if name is not None and name not in renamed:
            renamed[name] = renamed.pop(key)
            found.append(Deviation(f"{name}:renamed", key, f"read as {name}", ambiguous=False))
    return renamed


def read_envelope(body: dict[str, Any], *, bare: bool = False) -> Envelope:
    """`body`'s next_checkpoint and remaining_count, read by the rules above. `bare`: the events came
    without any envelope (a JSON array), so both values are unknown."""
    found: list[Deviation] = []
    if bare:
        found.append(
            Deviation(
                "envelope:bare_array",
                "[...]",
                "no checkpoint and no remaining count: the checkpoint advances by the event ids, paging ends",
                ambiguous=True,
            )
        )
        return Envelope(None, 0, tuple(found))
    nxt: int | None
    body = _with_documented_names(body, found)
    if "next_checkpoint" not in body:
        nxt = None
        found.append(Deviation("next_checkpoint:missing", "-", "read as null", ambiguous=False))
    else:
        raw = body["next_checkpoint"]
        if raw is None or (isinstance(raw, int) and not isinstance(raw, bool)):
            nxt = raw
        else:
            nxt = number_of(raw)
            kind = f"next_checkpoint:{_kind_of(raw)}"
            if nxt is not None:
                found.append(Deviation(kind, _shown(raw), f"read as {nxt}", ambiguous=False))
            else:
                found.append(
                    Deviation(
                        kind,
                        _shown(raw),
                        "ignored: the checkpoint advances by the page's event ids (plausibility rule), "
                        "paging ends for this tick",
                        ambiguous=True,
                    )
                )
    remaining: int
    if "remaining_count" not in body:
        remaining = 0
        found.append(
            Deviation("remaining_count:missing", "-", "read as 0: this tick's paging ends", ambiguous=False)
        )
    else:
        raw = body["remaining_count"]
        if raw is None:
            remaining = 0
        elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            remaining = raw
        else:
            n = number_of(raw)
            if n is None:
                remaining = 0
                found.append(
                    Deviation(
                        f"remaining_count:{_kind_of(raw)}",
                        _shown(raw),
                        "ignored: this tick's paging ends",
                        ambiguous=True,
                    )
                )
            elif n < 0:
                remaining = 0
                found.append(
                    Deviation(
                        "remaining_count:negative", _shown(raw), "read as 0: this tick's paging ends", False
                    )
                )
            else:
                remaining = n
                found.append(
                    Deviation(f"remaining_count:{_kind_of(raw)}", _shown(raw), f"read as {n}", False)
                )
    return Envelope(nxt, remaining, tuple(found))


def _objects(items: list[Any]) -> bool:
    """Every element is a JSON object: only such a list is taken as events outside the documented place
    (an error answer such as ``{"errors": ["..."]}`` is not a page)."""
    return all(isinstance(x, dict) for x in items)


def find_events(body: Any) -> tuple[list[Any], dict[str, Any], Deviation | None] | None:
    """(the events list, the envelope it came in, how that deviates) or None when there is no list.

    Accepted: ``{"events": [...]}`` (documented); a bare array; ``{"events": {"<any>": [...]}}`` and
    ``{"<any>": {"events": [...], ...}}`` (one more level of wrapping); and, when ``events`` is absent
    or null, the one top-level value that is a list. Outside the documented ``events`` only lists of
    objects count. Two candidate lists are ambiguous: None."""
    if isinstance(body, list):
        return (body, {}, None) if _objects(body) else None
    if not isinstance(body, dict):
        return None
    events = body.get("events")
    if isinstance(events, list):
        return events, body, None
    if isinstance(events, dict):
        lists = [(k, v) for k, v in events.items() if isinstance(v, list) and _objects(v)]
        if len(lists) == 1:
            key, inner = lists[0]
            envelope = {k: v for k, v in events.items() if k != key}
            merged = {**envelope, **{k: v for k, v in body.items() if k != "events"}}
            dev = Deviation(
                "events:wrapped", f'{{"events": {{"{key}": [...]}}}}', "the inner list is the events", False
            )
            return inner, merged, dev
        return None
    if events is not None:
        return None
    nested = [(k, v) for k, v in body.items() if isinstance(v, dict) and isinstance(v.get("events"), list)]
    lists = [(k, v) for k, v in body.items() if isinstance(v, list) and _objects(v)]
    if len(nested) == 1 and not lists:
        key, inner_env = nested[0]
        dev = Deviation(
            "envelope:wrapped", f'{{"{key}": {{"events": [...]}}}}', "the inner object is the envelope", False
        )
        return inner_env["events"], inner_env, dev
    if len(lists) == 1 and not nested:
        key, found = lists[0]
        dev = Deviation("events:renamed", f'{{"{key}": [...]}}', f'"{key}" is the events', False)
        return found, body, dev
    return None


def string_ids(ids: list[Any]) -> tuple[list[int], Deviation | None]:
    """The numbers of event ids sent as numeric strings ("5") or integral floats: they bound the checkpoint
    like integer ids (the events themselves are queued unchanged)."""
    out: list[int] = []
    first: Any = None
    for i in ids:
        if i is None or (isinstance(i, int) and not isinstance(i, bool)):
            continue
        n = number_of(i)
        if n is not None:
            out.append(n)
            if first is None:
                first = i
    if not out:
        return out, None
    return out, Deviation(f"event_id:{type(first).__name__}", _shown(first), "read as its number", False)


class DeviationLog:
    """Counts every deviation and logs each kind once per stream: a deviating API repeats it on every page,
    and one line per page would bury everything else. One per RUX client (its lifetime is the process)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._logged: set[tuple[str, str]] = set()

    def report(self, stream: str, path: str, deviations: tuple[Deviation, ...]) -> None:
        for d in deviations:
            self._metrics.api_envelope_deviations.labels(stream=stream, kind=d.kind).inc()
            if (stream, d.kind) in self._logged:
                continue
            self._logged.add((stream, d.kind))
            log.warning(
                "rux_envelope_deviation",
                stream=stream,
                endpoint=path,
                kind=d.kind,
                value=d.value,
                meaning=d.meaning,
                ambiguous=d.ambiguous,
                detail="the events are queued; logged once per stream and kind, every one is counted in "
                "siemconn_api_envelope_deviations_total"
                + (
                    "; the API answered an envelope that is not documented, tell Vectra"
                    if d.ambiguous
                    else ""
                ),
            )
