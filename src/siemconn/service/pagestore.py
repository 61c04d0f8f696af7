"""The source side's contract with the buffer (`PageStore`), as a Protocol kept with the part that uses it
(`siemconn.service.pulling`), as the writer's `QueueLike` is kept in `siemconn.syslog.contracts`.

Implemented by `siemconn.queue.DurableQueue` (on disk) and `siemconn.service.mempagestore.MemPageStore`
(in memory); tests/unit/service/test_pagestore.py runs the same contract cases against both, so the two
cannot drift. What every implementation keeps:

* `commit_page` is one step: the page's events, its checkpoint, its quarantine rows and its state are
  stored together or not at all. A commit that raises stores nothing and moves nothing.
* every event of a page ends in exactly one place: queued (counted in the return value), quarantined
  (the page's `rejects`, plus any event that cannot be encoded, each with its reason) or dropped as a
  duplicate. With `dedupe` (event streams), an event whose integer `id` is at or below the key's
  high-water mark (the highest integer id queued or quarantined for the key) is a duplicate; an event
  without an integer id is always kept. Snapshot streams commit with `dedupe=False`: their ids are not a
  cursor, and such a commit leaves the high-water mark as it was.
* the checkpoint only moves forward: `checkpoint(key)` after a commit is the larger of the stored one and
  the page's `next_checkpoint`; `next_checkpoint` None leaves it as it was. It moves with an empty page too.
* `state`, when given, replaces the key's stream state (lockdown's last-seen list), also with no events.
* `can_pull()` is the pull decision: (False, reason) while the store pauses fetching. A commit of a page
  the store has no room for raises `QueueNoRoomError` and stores nothing (the pull stops quietly and the
  page is fetched again later).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from siemconn.events.rejected import Rejected

__all__ = ["PageStore"]


class PageStore(Protocol):
    """The source side's whole contract with the buffer: a pull asks whether it may fetch, reads its
    checkpoint and state, and commits each page with its checkpoint (and state) in one durable step;
    nothing else (see the module docstring for the semantics)."""

    async def can_pull(self) -> tuple[bool, str]:
        """(False, reason) while the queue pauses fetching (a destination full, the disk under its floor)."""
        ...

    async def checkpoint(self, key: str) -> int | None:
        """The committed checkpoint of key, or None before its first page."""
        ...

    async def stream_state(self, key: str) -> str | None:
        """The state committed with key's last page (lockdown's last-seen list), or None."""
        ...

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
        """Store one page, its checkpoint and its rejects in one commit; the events kept after dedupe."""
        ...

    async def record_poll(self, key: str, when: float) -> None:
        """Remember the time of key's last successful poll."""
        ...
