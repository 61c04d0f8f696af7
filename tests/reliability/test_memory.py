"""Memory that must stay flat in a process that runs for months (issue 30), checked fast: the queue's SQLite
page cache is bounded explicitly, and a commit/read/ack cycle of the real queue keeps nothing per page.
The long runs of the real service are in test_memory_soak.py (marked soak)."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

from support.memwatch import RssWatch, sqlite_memory_used

from siemconn.queue import DurableQueue
from siemconn.queue.schema import SQLITE_CACHE_KIB

KIB = 1024


def _page(first: int, n: int = 1000, pad: int = 1000) -> list[dict[str, Any]]:
    """An API page of `n` events of ~`pad` bytes, ids from `first`."""
    return [{"id": i, "name": "host-\u00e9", "blob": "x" * pad} for i in range(first, first + n)]


async def _cycle(q: DurableQueue, first: int) -> None:
    """One API page through the queue: committed, read in batches of 500 and acked."""
    await q.commit_page("detections", _page(first), first + 1000)
    while (b := await q.read_batch("a", 500)) is not None:
        await q.ack(b)


async def test_sqlite_page_cache_is_bounded(tmp_path: Path) -> None:
    """SQLite's own memory stays within the explicit cache bound while megabyte pages flow through.

    The library default (2,000 KiB per connection) let the cache grow to ~2.2 MB; the bound is set on the
    queue's connection at every open, also for an existing file."""
    before = sqlite_memory_used()
    q = await DurableQueue.open(tmp_path / "data", ["a"], min_free_disk_mb=0)
    try:
        assert await q._sql(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -SQLITE_CACHE_KIB
        for i in range(40):
            await _cycle(q, 1 + i * 1000)
        used = sqlite_memory_used() - before
    finally:
        await q.close()
    # the cache, plus the schema, the prepared statements and the last INSERT's bound page text (sqlite3
    # binds a copy that stays with the cached statement until the next INSERT): ~1.3 MB for these pages
    assert used < SQLITE_CACHE_KIB * KIB + 1536 * KIB, f"SQLite holds {used} bytes"
    q = await DurableQueue.open(tmp_path / "data", ["a"], min_free_disk_mb=0)  # reopened: set again
    try:
        assert await q._sql(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -SQLITE_CACHE_KIB
    finally:
        await q.close()


async def test_queue_cycle_keeps_nothing_per_page(tmp_path: Path) -> None:
    """Traced Python memory after 100 more pages through the real queue is where it was after the first
    50: nothing is kept per page, per batch or per id."""
    q = await DurableQueue.open(tmp_path / "data", ["a"], min_free_disk_mb=0)
    tracemalloc.start()
    try:
        for i in range(50):  # warm-up: caches, statements, the housekeeping cadence
            await _cycle(q, 1 + i * 1000)
        gc.collect()
        warm = tracemalloc.get_traced_memory()[0]
        for i in range(50, 150):
            await _cycle(q, 1 + i * 1000)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        await q.close()
    assert after - warm < 64 * KIB, f"traced memory grew by {after - warm} bytes over 100 pages"


def test_rss_watch_writes_into_a_missing_directory(tmp_path: Path) -> None:
    """The soak's sample file may name a directory nobody created: the watch creates it and keeps
    sampling (its thread used to end at the first write, and the soak failed an hour later with no
    samples)."""
    out = tmp_path / "not-yet" / "rss-plain.tsv"
    watch = RssWatch(os.getpid(), every=0.01, out=out).start()
    try:
        deadline = time.monotonic() + 10
        while len(watch.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watch.stop()
    assert len(watch.samples) >= 3
    assert len(out.read_text(encoding="ascii").splitlines()) >= 3
