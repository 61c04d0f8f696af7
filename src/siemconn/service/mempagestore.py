"""An in-memory implementation of the source side's contract with the queue
(`siemconn.service.pagestore.PageStore`), with `DurableQueue.commit_page`'s semantics, so that a pull can
be tried without a queue file (the tests use it; an embedding program may too). It lives next to the
contract it implements, as `siemconn.syslog.memqueue.MemQueue` does for the writer's.

What it keeps of the durable queue (`siemconn.queue.commit`; tests/unit/service/test_pagestore.py runs
the same cases against both):

* a commit is one step: everything is computed first, then applied, so a commit that raises (an injected
  failure, no room) stores nothing and moves nothing. An empty key raises ValueError.
* each event of a page is queued (a `MemPage` holds the page's json.dumps payloads and ids, in commit
  order), quarantined (`quarantined`: the key and the `Rejected`, the page's rejects first, then each
  event the encoder cannot write, with its reason and detail) or counted as a duplicate (`duplicates`).
  A page whose events are all dropped stores no `MemPage`.
* dedupe: an event whose integer id is at or below the key's high-water mark is a duplicate; the mark is
  the highest integer id queued or quarantined (a reject's `event_id` text that is an integer) for the
  key, raised only by commits with `dedupe`. Ids are compared with the mark as it was before the page:
  two events of one page with the same id are both kept.
* the checkpoint only moves forward (the larger of the stored one and `next_checkpoint`; None leaves it),
  also with an empty page; `state` replaces the key's stream state, also with an empty page.
* the pull decision: `can_pull()` is (False, reason) while the stored events reach `max_events` (the
  queue's per-destination cap; `drain()` takes the stored pages away, as delivery does) or while
  `no_room` is set (the disk floor); with `no_room` set, a commit that would queue events raises
  `QueueNoRoomError` before storing anything, as the queue's room check does.

`events` may be parsed objects or `EncodedEvents` already in the stored form (the page transcoder's
output), as the client yields them. Not kept: destinations, routing, durability across a restart (a new
`Pull` on the same store is the restart the pull side sees).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from siemconn.errors import QueueNoRoomError
from siemconn.events.encoder import encode_event, event_id
from siemconn.events.rejected import Rejected, int_id, reject_parsed
from siemconn.events.transcode import EncodedEvents

__all__ = ["MemPage", "MemPageStore"]


@dataclass(frozen=True)
class MemPage:
    """One committed page: what `DurableQueue` would store as one page log row."""

    key: str
    ids: list[int | None]
    payloads: list[str]  # json.dumps(event) of each queued event
    checkpoint: int | None  # the key's checkpoint after this page
    committed_at: float


@dataclass(eq=False)
class MemPageStore:
    """Pages, checkpoints, high-water marks, stream states and quarantine rows, per key, in memory."""

    max_events: int | None = None  # can_pull() pauses while this many events are stored
    clock: Callable[[], float] = time.time
    no_room: str | None = None  # set: can_pull() pauses with this reason, a page to queue is refused
    fail_next_commit: BaseException | None = None  # raised (once) by the next commit_page, storing nothing
    pages: list[MemPage] = field(default_factory=list)
    quarantined: list[tuple[str, Rejected]] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    hwm: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    polls: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ the contract

    async def can_pull(self) -> tuple[bool, str]:
        stored = sum(len(p.payloads) for p in self.pages)
        if self.max_events is not None and stored >= self.max_events:
            return False, f"{stored} undelivered events (queue_max_events={self.max_events})"
        if self.no_room is not None:
            return False, self.no_room
        return True, ""

    async def checkpoint(self, key: str) -> int | None:
        return self.checkpoints.get(key)

    async def stream_state(self, key: str) -> str | None:
        return self.states.get(key)

    async def record_poll(self, key: str, when: float) -> None:
        self.polls[key] = when

    async def commit_page(
        self,
        key: str,
        events: Sequence[Mapping[str, Any]],
        next_checkpoint: int | None,
        rejects: Sequence[Rejected] = (),
        *,
        state: str | None = None,
        dedupe: bool = True,
    ) -> int:
        if not key:
            raise ValueError("commit_page: empty key")
        if self.fail_next_commit is not None:
            exc, self.fail_next_commit = self.fail_next_commit, None
            raise exc
        hwm = self.hwm.get(key)
        rows = list(rejects)
        ids: list[int | None] = []
        payloads: list[str] = []
        dups = 0
        if isinstance(events, EncodedEvents):
            for eid, text in zip(events.ids, events.payloads(), strict=True):
                if dedupe and eid is not None and hwm is not None and eid <= hwm:
                    dups += 1
                    continue
                ids.append(eid)
                payloads.append(text)
        else:
            for event in events:
                eid = event_id(event)
                if dedupe and eid is not None and hwm is not None and eid <= hwm:
                    dups += 1
                    continue
                try:
                    payloads.append(encode_event(event))
                except Exception as exc:  # one event the encoder cannot write: quarantine it, keep the page
                    rows.append(reject_parsed(event, exc))
                    continue
                ids.append(eid)
        if payloads and self.no_room is not None:
            raise QueueNoRoomError(f"{self.no_room}; the page was not stored")
        new_cp = self.checkpoints.get(key)
        if next_checkpoint is not None:
            new_cp = int(next_checkpoint) if new_cp is None else max(new_cp, int(next_checkpoint))
        new_hwm = hwm
        if dedupe:
            for i in [*ids, *map(int_id, rows)]:
                if i is not None and (new_hwm is None or i > new_hwm):
                    new_hwm = i
        # applied only now: nothing above has changed the store
        if payloads:
            self.pages.append(MemPage(key, ids, payloads, new_cp, self.clock()))
        self.quarantined.extend((key, r) for r in rows)
        if dups:
            self.duplicates[key] = self.duplicates.get(key, 0) + dups
        if new_cp is not None:
            self.checkpoints[key] = new_cp
        if new_hwm is not None:
            self.hwm[key] = new_hwm
        if state is not None:
            self.states[key] = state
        return len(payloads)

    # ------------------------------------------------------------------ for the caller

    def events(self, key: str | None = None) -> list[tuple[str, Any]]:
        """(key, decoded event) of every stored event (of `key` only, if given), in commit order."""
        return [
            (p.key, json.loads(text))
            for p in self.pages
            if key is None or p.key == key
            for text in p.payloads
        ]

    def drain(self) -> list[MemPage]:
        """Take every stored page away (as a destination that delivered them), oldest first."""
        taken, self.pages = self.pages, []
        return taken
