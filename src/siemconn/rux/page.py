"""One RUX answer body as data: JSON loading that keeps every integer exact, and the page's shape checks.

Invariants: `loads_page` gives the same values the json module would (orjson is only the fast path: a
body that may hold an integer beyond 64 bits, or that orjson rejects, goes to json); `parse_page` either
returns a page whose ``events`` are all objects, whose ``next_checkpoint`` is an integer or None and
whose ``remaining_count`` is an integer, or raises RuxResponseError naming what is wrong (checkpoint
kept). An envelope that deviates from the documented shape is read by `siemconn.rux.envelope` and its
deviations are returned with the page; only a body without any list of events is an error. Elements that
cannot be queued are returned as `Rejected`, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeGuard

import orjson

from siemconn.errors import RuxResponseError
from siemconn.events.rejected import NOT_AN_OBJECT, Rejected, raw_json
from siemconn.events.transcode import EncodedEvents, transcode_page
from siemconn.logging import get_logger
from siemconn.ops.gctune import parse_paused
from siemconn.ops.metrics import Metrics
from siemconn.rux.answer import Answer
from siemconn.rux.envelope import Deviation, find_events, read_envelope
from siemconn.rux.salvage import salvage_page
from siemconn.rux.streams import StreamSpec

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "Page",
    "PageBody",
    "has_long_digit_run",
    "is_int",
    "loads_page",
    "parse_page",
    "reject_id",
    "report_repeats",
]

log = get_logger("siemconn.rux")

I64_MIN, I64_MAX = -(2**63), 2**63 - 1  # what the queue (SQLite INTEGER) can store


@dataclass(frozen=True)
class Page:
    """One API page: the events to commit, the checkpoint to store with them (None: none usable on a
    first run), and the elements to quarantine instead of queue."""

    spec: StreamSpec
    events: list[dict[str, Any]] | EncodedEvents
    next_checkpoint: int | None
    rejects: list[Rejected] = field(default_factory=list)


class PageBody(NamedTuple):
    """What a page answer says, checked: its events, the server's next_checkpoint, remaining_count, the
    elements to quarantine, and how its envelope deviated from the documented one."""

    events: list[dict[str, Any]] | EncodedEvents
    next_checkpoint: int | None
    remaining: int
    rejects: list[Rejected]
    deviations: tuple[Deviation, ...] = ()

    @property
    def ambiguous(self) -> bool:
        """An envelope value had to be ignored: this tick's paging ends after this page."""
        return any(d.ambiguous for d in self.deviations)


# A number token of 19+ digits may be an integer beyond 64 bits, which orjson turns into a lossy float:
# such pages go to the json module, which keeps arbitrary-precision ints. The scan maps every ASCII digit
# to "0" and everything else to " " and looks for 19 zeros (far cheaper than re's rb"\d{19}"). The run may
# belong to a number token if the bytes before it that can be part of one ("-", "+", ".", "e", "E",
# digits) start where a JSON value can start (after ":", "[", ",", whitespace, or at the start of the
# document); otherwise it is inside a string (hashes, serial numbers: a hex hash's
# "...de6e6306406942102430844" has a letter before the "6e") and does not need the slow parser. Erring on
# the side of the json module only costs speed.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
_NUMBER_BYTES = frozenset(b"0123456789-+.eE")
_VALUE_START = frozenset(b":[, \t\r\n")


def has_long_digit_run(content: bytes) -> bool:
    """True if a run of 19+ ASCII digits in content may be (part of) a JSON number token."""
    mapped = content.translate(_DIGITS_AS_ZERO)
    i = mapped.find(_NINETEEN_DIGITS)
    while i >= 0:
        j = i - 1
        while j >= 0 and content[j] in _NUMBER_BYTES:
            j -= 1
        if j < 0 or content[j] in _VALUE_START:
            return True
        end = mapped.find(b" ", i + 19)  # the end of this run
        if end < 0:
            return False
        i = mapped.find(_NINETEEN_DIGITS, end)
    return False


def loads_page(content: bytes) -> Any:
    """orjson, falling back to json for what orjson rejects or would change (NaN, integers beyond 64 bits)."""
    if not has_long_digit_run(content):
        try:
            return parse_paused(orjson.loads, content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content.decode("utf-8"))


def is_int(v: Any) -> TypeGuard[int]:
    """A JSON integer (bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def reject_id(r: Rejected) -> int | None:
    """The integer id of a quarantined element, when it had one (it still moves a null checkpoint)."""
    if r.event_id is None:
        return None
    try:
        v = json.loads(r.event_id)
    except ValueError:
        return None
    return v if is_int(v) else None


def parse_page(spec: StreamSpec, path: str, resp: Answer) -> PageBody:
    """Check a page answer's shape; a body that does not parse as a whole is salvaged event by event."""

    def bad(what: str) -> RuxResponseError:
        return RuxResponseError(f"bad response from {path} for stream {spec.key}: {what}; checkpoint kept")

    # the common case: the transcoder writes the events' stored form straight from the text, and only
    # the small envelope around them is parsed
    fast = transcode_page(resp.content)
    if fast is not None:
        events: Any
        events, envelope = fast
        return _checked(loads_page(envelope), events, [], None, bare=False)
    return _parse_objects(spec, path, resp, bad)


def _parse_objects(
    spec: StreamSpec, path: str, resp: Answer, bad: Callable[[str], RuxResponseError]
) -> PageBody:
    """The page parsed into objects (the path for what the transcoder leaves)."""
    rejects: list[Rejected] = []
    try:
        body = loads_page(resp.content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        salvaged = salvage_page(resp.content, loads_page)  # the slow path: split it event by event
        if salvaged is None:
            ctype = resp.headers.get("Content-Type", "?")
            raise bad(
                f"body is not JSON ({type(exc).__name__}, Content-Type {ctype}, {len(resp.content)} bytes)"
            ) from None
        body, rejects = salvaged.envelope, salvaged.rejects
        log.warning(
            "rux_page_salvaged",
            stream=spec.key,
            error=f"{type(exc).__name__}: {exc}"[:200],
            events=len(salvaged.events),
            quarantined=len(rejects),
            detail="the page did not parse as a whole; its good events are queued, the others quarantined",
        )
    located = find_events(body)
    if located is None:
        if not isinstance(body, dict):
            raise bad(f"expected a JSON object with 'events', got a JSON {type(body).__name__}")
        events = body.get("events")
        raise bad(
            "'events' is missing or not a list, and no other list of events was found"
            if events is None
            else f"'events' is a {type(events).__name__}, not a list"
        )
    events, envelope, moved = located
    if not all(isinstance(ev, dict) for ev in events):
        for i, ev in enumerate(events):
            if not isinstance(ev, dict):
                detail = f"events[{i}] is a JSON {type(ev).__name__}, not an object"
                rejects.append(Rejected(raw_json(ev), NOT_AN_OBJECT, detail))
        events = [ev for ev in events if isinstance(ev, dict)]
    return _checked(envelope, events, rejects, moved, bare=isinstance(body, list))


def _checked(
    body: dict[str, Any],
    events: list[dict[str, Any]] | EncodedEvents,
    rejects: list[Rejected],
    moved: Deviation | None,
    *,
    bare: bool,
) -> PageBody:
    """The envelope's checkpoint and remaining count, read leniently (`siemconn.rux.envelope`)."""
    env = read_envelope(body, bare=bare)
    deviations = env.deviations if moved is None else (moved, *env.deviations)
    remaining = 0 if env.ambiguous else env.remaining
    return PageBody(events, env.next_checkpoint, remaining, rejects, deviations)


def report_repeats(spec: StreamSpec, previous_ids: set[Any], ids: list[Any], metrics: Metrics) -> None:
    """Count and log the events dropped because the previous page of this run already had them."""
    repeated = [i for i in ids if i is not None and i in previous_ids]
    ints = [i for i in repeated if is_int(i)]
    log.info(
        "duplicate_events_dropped",
        stream=spec.key,
        count=len(repeated),
        first_id=min(ints) if ints else None,
        last_id=max(ints) if ints else None,
        detail="repeated from the previous page of this run",
    )
    metrics.events_duplicate.labels(stream=spec.key).inc(len(repeated))
