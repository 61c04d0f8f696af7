"""The read path: a destination's next events as a `Batch` of `Segment`s, by an index range read.

Invariants: a read never moves a cursor and never decodes a payload (a page's `data` is split on b"\\n"
into bytes); its cost depends on the batch size, not on the backlog. Pages are contiguous on first_seq,
so the page after a cached one starts where the cached one ends.

A routed destination (one that takes only some streams, see `routing`) reads with `read_routed`: it
finds the next page of its keys on the (key, first_seq, n) index, so the pages it steps over are never
read; its batch covers [cursor, end) of the one sequence, with segments for its own pages only.
"""

from __future__ import annotations

import sqlite3

from siemconn.events.batch import Batch, Segment
from siemconn.queue.pagelog import load_ids, split_page
from siemconn.queue.routing import next_taken_page
from siemconn.queue.schema import PAGE_TABLE

__all__ = ["PageReader"]

_Decoded = tuple[int, str, list[int | None], list[bytes]]  # (first_seq, stream, ids, payloads as bytes)


class PageReader:
    """Reads batches, keeping per destination the last page it split (used by one thread only).

    A batch smaller than a page reads the same page again; the cache saves splitting it again. A page is
    dropped from the cache once the destination has read all of it, so its payloads are not kept alive.
    """

    def __init__(self) -> None:
        self._decoded: dict[str, _Decoded] = {}

    def clear(self) -> None:
        """Forget every cached page (a reload loaded the state again)."""
        self._decoded.clear()

    def _decode_page(
        self, destination: str, first_seq: int, key: str, ids_text: str, data: bytes
    ) -> tuple[str, list[int | None], list[bytes]]:
        stream = key.partition(".")[0]
        ids = load_ids(ids_text)
        payloads = split_page(data)
        self._decoded[destination] = (int(first_seq), stream, ids, payloads)
        return stream, ids, payloads

    def read(
        self, conn: sqlite3.Connection, destination: str, cur: int, head: int, max_events: int
    ) -> Batch | None:
        """Up to max_events events of destination from sequence number cur (< head), or None."""
        segments: list[Segment] = []
        count = 0
        cached = self._decoded.get(destination)
        if cached is not None and cached[0] <= cur < cached[0] + len(cached[3]):
            # the page this destination is in the middle of (a batch smaller than a page): no re-read
            first_seq, stream, ids, payloads = cached
            off = cur - first_seq
            count = min(len(payloads) - off, max_events)
            segments.append(Segment(stream, ids[off : off + count], payloads[off : off + count]))
            start = first_seq + len(payloads)  # pages are contiguous: the next one starts here
        else:
            start_row = conn.execute(
                f"SELECT first_seq FROM {PAGE_TABLE} WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
                (cur,),
            ).fetchone()
            start = int(start_row[0]) if start_row else cur
        if count < max_events and start < head:
            rows = conn.execute(
                f"SELECT first_seq, n, key, ids, CAST(data AS BLOB) FROM {PAGE_TABLE} WHERE first_seq >= ? "
                "ORDER BY first_seq",
                (start,),
            )
            try:
                for first_seq, n, key, ids_text, data in rows:
                    off = max(0, cur + count - int(first_seq))
                    if off >= n:
                        continue
                    take = min(int(n) - off, max_events - count)
                    stream, ids, payloads = self._decode_page(destination, first_seq, key, ids_text, data)
                    segments.append(Segment(stream, ids[off : off + take], payloads[off : off + take]))
                    count += take
                    if count >= max_events:
                        break
            finally:
                rows.close()
        cached = self._decoded.get(destination)
        if cached is not None and cur + count >= cached[0] + len(cached[3]):
            del self._decoded[destination]  # fully read: do not keep its payloads alive
        if not count:
            return None
        return Batch(destination, segments, cur, cur + count)

    def read_routed(
        self,
        conn: sqlite3.Connection,
        destination: str,
        cur: int,
        head: int,
        max_events: int,
        keys: list[str],
    ) -> Batch | None:
        """Up to max_events events of these keys from sequence number cur, or None if there are none.

        The batch starts at cur and ends after its last event, or at head when no page of these keys
        follows it, so acking it also steps over the other streams' pages it passed.
        """
        segments: list[Segment] = []
        count = 0
        pos = cur
        while count < max_events and pos < head:
            nxt = next_taken_page(conn, pos, keys)
            if nxt is None:
                pos = head
                break
            first_seq, n, key = nxt
            off = max(0, pos - first_seq)
            cached = self._decoded.get(destination)
            if cached is not None and cached[0] == first_seq:
                _, stream, ids, payloads = cached
            else:
                row = conn.execute(
                    f"SELECT ids, CAST(data AS BLOB) FROM {PAGE_TABLE} WHERE first_seq = ?", (first_seq,)
                ).fetchone()
                stream, ids, payloads = self._decode_page(destination, first_seq, key, row[0], row[1])
            take = min(n - off, max_events - count)
            segments.append(Segment(stream, ids[off : off + take], payloads[off : off + take]))
            count += take
            pos = first_seq + off + take
        cached = self._decoded.get(destination)
        if cached is not None and pos >= cached[0] + len(cached[3]):
            del self._decoded[destination]
        if not count:
            return None
        return Batch(destination, segments, cur, pos)
