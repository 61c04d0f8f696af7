"""The plausibility rule for a server's ``next_checkpoint``: a bogus value cannot skip events.

A stored checkpoint is the ``from`` of every later request, so one answer with an absurd
``next_checkpoint`` (say 9223372036854775797) would make every later event unreachable. The rule
bounds what a page can prove about the id space:

* A page with integer event ids proves that ids up to its largest one were served: it moves the
  checkpoint to at most ``max(id) + 1`` (the documented ``last id + 1``). A lower server value is
  kept (servers that repeat the last event), never one below the cursor the page was requested with.
* A page without integer ids (empty, or ids of another type) proves nothing about ids: the checkpoint
  moves at most ``limit`` past the request's ``from`` (one page's worth of ids the server may have
  skipped as filtered out); on a first run (no stored checkpoint yet) a larger value is not stored at
  all, so the next run is again a first run with its lookback window.

Clamping never loses an event: a lower ``from`` only makes the server send ids again, which the
queue counts as duplicates. Every clamp is reported with both values (`Cursor.clamped_from`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cursor", "plausible_checkpoint"]


@dataclass(frozen=True)
class Cursor:
    """The checkpoint to store for one page (None: store nothing), and the server value it replaced."""

    value: int | None
    clamped_from: int | None = None  # the server's value when the rule lowered it
    bound: int | None = None  # the highest value the rule allowed


def plausible_checkpoint(
    server: int | None,
    *,
    cursor: int | None,
    request_from: int,
    limit: int,
    max_id: int | None,
) -> Cursor:
    """Apply the rule above. `cursor` is the checkpoint so far (None on a first run), `max_id` the
    largest integer event id of the page (None when it has none)."""
    if max_id is not None:
        bound = max_id + 1
        if server is None:
            return Cursor(_not_below(bound, cursor))
        if server > bound:
            return Cursor(_not_below(bound, cursor), clamped_from=server, bound=bound)
        return Cursor(_not_below(server, cursor))
    if server is None:
        return Cursor(cursor)
    bound = max(request_from, cursor if cursor is not None else request_from) + limit
    if server > bound:
        if cursor is None:
            return Cursor(None, clamped_from=server, bound=bound)
        return Cursor(_not_below(bound, cursor), clamped_from=server, bound=bound)
    return Cursor(_not_below(server, cursor))


def _not_below(value: int, cursor: int | None) -> int:
    return value if cursor is None else max(value, cursor)
