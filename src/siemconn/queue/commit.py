"""The source side's writes: one API page, with its checkpoint, in one durable commit.

Invariants
----------
* every event of a page ends in exactly one of three places, all in the page's one commit: queued,
  quarantined (the source's rejects, plus any event the encoder cannot write) or counted as a duplicate.
* the checkpoint is DERIVED from what is queued (see `store`): a page's `next_checkpoint` and highest id
  are stored in its own row; a commit with side rows (quarantine rows, cursor steps, stream state) or
  without a page row folds them into the side table `checkpoints`, in the same transaction.
* dedupe: event ids are monotonic per key, so an event whose integer `id` is at or below the key's
  high-water mark is a re-fetch of an overlapping page after a crash and is dropped; an event without an
  integer id is kept. Snapshot streams (health, lockdown) commit with `dedupe=False` (their ids are not
  a cursor) and may commit a `state` text with a page, in the same transaction.
* routed destinations with nothing of their own pending step over a page they do not take in the page's
  own transaction (routing's invariant: pending == 0 implies cursor == head).
* the in-memory state (`QueueState`) changes only after the commit succeeded.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from siemconn.events.encoder import EVENT_ID_FIELD, I64_MAX, I64_MIN, encode_event, encode_events, event_id
from siemconn.events.rejected import Rejected, int_id, reject_parsed
from siemconn.events.transcode import EncodedEvents
from siemconn.queue.opening import QueueState
from siemconn.queue.pagelog import PageLog, PageSerializer
from siemconn.queue.quarantine import insert_rejected
from siemconn.queue.routing import stream_of
from siemconn.queue.schema import NO_CHECKPOINT
from siemconn.queue.transaction import transaction

__all__ = ["CommitResult", "commit_page", "record_poll"]

_FOLD_SQL = (
    "INSERT INTO checkpoints (key, checkpoint, hwm) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
    "SET checkpoint = CASE WHEN excluded.checkpoint IS NULL THEN checkpoint "
    "ELSE MAX(COALESCE(checkpoint, excluded.checkpoint), excluded.checkpoint) END, "
    "hwm = CASE WHEN excluded.hwm IS NULL THEN hwm "
    "ELSE MAX(COALESCE(hwm, excluded.hwm), excluded.hwm) END"
)
_STREAM_STATE_SQL = "INSERT INTO stream_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one commit_page did with the page's events (for the log lines and the counters)."""

    kept: int
    duplicates: int
    dup_min: int | None
    dup_max: int | None
    hwm: int | None  # the high-water mark the duplicates were measured against
    quarantined: list[Rejected]


def _encode_objects(
    events: Sequence[Mapping[str, Any]], hwm: int | None, dedupe: bool, rejects: list[Rejected]
) -> tuple[int, list[int | None], str, list[int]]:
    """Parsed events -> (count, ids, page text, duplicate ids): the dedupe, then the whole page in one pass
    when the fast encoder's bytes are json.dumps' for all of it, otherwise one event at a time,
    quarantining (into `rejects`) any event the encoder cannot write; the bytes are the same either way."""
    dup_ids: list[int] = []
    kept: list[Mapping[str, Any]] = []
    kept_ids: list[int | None] = []
    for event in events:
        v = event.get(EVENT_ID_FIELD)
        eid = v if type(v) is int and I64_MIN <= v <= I64_MAX else event_id(event)
        if dedupe and eid is not None and hwm is not None and eid <= hwm:
            dup_ids.append(eid)
            continue
        kept.append(event)
        kept_ids.append(eid)
    data = encode_events(kept) if kept else None
    if data is not None:
        return len(kept), kept_ids, data, dup_ids
    payloads: list[str] = []
    ids: list[int | None] = []
    for event, eid in zip(kept, kept_ids, strict=True):
        try:
            payloads.append(encode_event(event))
        except Exception as exc:  # one event the encoder cannot write: quarantine it, keep the page
            rejects.append(reject_parsed(event, exc))
            continue
        ids.append(eid)
    return len(payloads), ids, PageSerializer.dumps(payloads), dup_ids


def commit_page(
    conn: sqlite3.Connection,
    pages: PageLog,
    state: QueueState,
    key: str,
    events: Sequence[Mapping[str, Any]] | EncodedEvents,
    next_checkpoint: int | None,
    rejects: list[Rejected],
    stream_state: str | None = None,
    dedupe: bool = True,
    room: Callable[[int, int], None] | None = None,
) -> CommitResult:
    """Store one page of key (see `DurableQueue.commit_page` for the arguments) and update `state` after
    it is durable. `rejects` is extended with the events the encoder cannot write. `room(bytes, events)`,
    if given, is asked before anything is written and raises to refuse the page (the disk floor)."""
    hwm = state.hwm.get(key)
    if isinstance(events, EncodedEvents):
        # already in the stored form (queue.transcode): the dedupe reads the ids, nothing is encoded
        keep = [not dedupe or eid is None or hwm is None or eid > hwm for eid in events.ids]
        dup_ids = [eid for eid, k in zip(events.ids, keep, strict=True) if not k and eid is not None]
        stored = events.select(keep)
        count, ids, data = len(stored), stored.ids, stored.text
    else:
        count, ids, data, dup_ids = _encode_objects(events, hwm, dedupe, rejects)
    prev = state.checkpoints.get(key)
    if next_checkpoint is None:
        new_cp = prev
    else:
        new_cp = next_checkpoint if prev is None else max(prev, next_checkpoint)
    if dedupe:
        reject_ids = [i for i in map(int_id, rejects) if i is not None]
        known = [i for i in ids if i is not None]
        top = max(known + reject_ids) if known or reject_ids else None
    else:
        top = None
    new_hwm = hwm if top is None else (top if hwm is None else max(hwm, top))
    result = CommitResult(
        count,
        len(dup_ids),
        min(dup_ids) if dup_ids else None,
        max(dup_ids) if dup_ids else None,
        hwm,
        rejects,
    )
    first_seq = state.head
    new_head = first_seq + count
    stepped = (
        [
            d
            for d, streams in state.routes.items()
            if streams is not None and stream_of(key) not in streams and state.pending[d] == 0
        ]
        if count
        else []
    )
    also: list[tuple[str, tuple[Any, ...]]] = [
        ("UPDATE cursors SET seq = ? WHERE destination = ?", (new_head, d)) for d in stepped
    ]
    if stream_state is not None:
        also.append((_STREAM_STATE_SQL, (key, stream_state)))
    cp_moved = new_cp is not None and new_cp != prev
    side = bool(rejects) or bool(also) or (not count and cp_moved)
    if not count and not side:
        return result
    if room is not None and count:
        room(len(data) + sum(len(r.raw) for r in rejects), count)
    now = time.time()
    inserted = False
    try:
        # with side rows the page, its quarantine rows and the folded checkpoint are one transaction;
        # a page alone is one INSERT, itself a durable commit
        with transaction(conn) if side else contextlib.nullcontext():
            if rejects:
                insert_rejected(conn, key, rejects, now)
            if count:
                stored_cp = NO_CHECKPOINT if new_cp is None else new_cp
                pages.put_page(data, count, key, first_seq, ids, stored_cp, now, also)
                inserted = True
            else:
                for sql, params in also:
                    conn.execute(sql, params)
            if side and (new_cp is not None or new_hwm is not None):
                conn.execute(_FOLD_SQL, (key, new_cp, new_hwm))
    except BaseException:
        if inserted:
            pages.forget(1)
        raise
    if count:
        state.head = new_head
        for d in stepped:
            state.cursors[d] = new_head
        for d, streams in state.routes.items():
            if streams is not None and stream_of(key) in streams:
                state.pending[d] += count
    if stream_state is not None:
        state.stream_state[key] = stream_state
    if new_cp is not None:
        state.checkpoints[key] = new_cp
    if new_hwm is not None:
        state.hwm[key] = new_hwm
    return result


def record_poll(conn: sqlite3.Connection, state: QueueState, key: str, when: float) -> None:
    """Durably remember the time of the last successful poll of key (for `siemconn status`)."""
    conn.execute(
        "INSERT INTO polls (key, at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET at = excluded.at",
        (key, when),
    )
    state.polls[key] = when
