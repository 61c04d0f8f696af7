"""Durable-queue benchmark: per-event cost at a small vs a large backlog, and memory while it sits queued.

For each backlog size: a fresh queue with two destinations is filled with pages of 1,000 events of ~1.2 KB
(the API page shape) and left undelivered. Then, at that backlog, it times
  * commit_page of more 1,000-event pages (json.dumps + one durable commit per page), and
  * read_batch(500) + ack for the destination whose cursor sits at the oldest end of the backlog,
and reports microseconds per event (median of rounds), the large/small ratio (must be <= 1.2: cost per
event must stay flat as the backlog grows) and the process RSS (current and peak, /proc/self/status)
while the largest backlog is queued (the backlog is never loaded in memory).

    python bench/queue_bench.py [--sizes 10000,1000000] [--baseline]

`--baseline` also measures persist-queue's own SQLiteAckQueue get+ack with 2,000 vs 20,000 acked rows not
yet cleared (the scan this design avoids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from siemconn.queue import DurableQueue

PAGE_EVENTS = 1000
BATCH_EVENTS = 500
ROUNDS = 7
COMMIT_PAGES_PER_ROUND = 5
READ_BATCHES_PER_ROUND = 8


def _page(first_id: int, n: int = PAGE_EVENTS) -> list[dict[str, Any]]:
    """n audit-like events of ~1.2 KB each once JSON-encoded."""
    filler = "lorem ipsum dolor sit amet consectetur " * 26
    return [
        {
            "id": i,
            "user_id": 1000 + i % 97,
            "username": f"user{i % 97}@example.com",
            "api_client_id": None,
            "event_timestamp": "2024-05-01T12:00:00Z",
            "event_action": "update",
            "event_object": "detection",
            "event_data": {"detection_id": i * 7, "note": filler[: 900 + i % 50]},
            "result_status": "success",
            "source_ip": f"10.0.{i % 255}.{i % 253}",
            "version": "2022.0.0",
        }
        for i in range(first_id, first_id + n)
    ]


def _rss_kb() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


async def _measure(size: int, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / f"q{size}"
    q = await DurableQueue.open(data_dir, ["measured", "other"], max_events=10 * size + 10 * PAGE_EVENTS)
    try:
        next_id = 1
        t0 = time.perf_counter()
        while await q.depth("measured") < size:
            n = min(PAGE_EVENTS, size - await q.depth("measured"))
            await q.commit_page("audit", _page(next_id, n), next_id + n)
            next_id += n
        fill_s = time.perf_counter() - t0
        rss_queued = _rss_kb()
        commit_us: list[float] = []
        read_us: list[float] = []
        for r in range(ROUNDS + 1):  # round 0 warms caches up and is not counted
            pages = [_page(next_id + k * PAGE_EVENTS) for k in range(COMMIT_PAGES_PER_ROUND)]
            t = time.perf_counter()
            for p in pages:
                await q.commit_page("audit", p, p[-1]["id"] + 1)
            commit_cost = (time.perf_counter() - t) * 1e6 / (len(pages) * PAGE_EVENTS)
            next_id += COMMIT_PAGES_PER_ROUND * PAGE_EVENTS
            n_read = 0
            t = time.perf_counter()
            for _ in range(READ_BATCHES_PER_ROUND):
                b = await q.read_batch("measured", BATCH_EVENTS)
                assert b is not None
                await q.ack(b)
                n_read += len(b)
            if r:
                commit_us.append(commit_cost)
                read_us.append((time.perf_counter() - t) * 1e6 / n_read)
        depth = await q.depth("other")
    finally:
        await q.close()
    db_bytes = sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file())
    t = time.perf_counter()
    q = await DurableQueue.open(data_dir, ["measured", "other"], max_events=10 * size + 10 * PAGE_EVENTS)
    reopen_s = time.perf_counter() - t
    await q.close()
    return {
        "backlog_events": size,
        "fill_seconds": round(fill_s, 2),
        "commit_page_us_per_event": round(statistics.median(commit_us), 2),
        "read_batch_ack_us_per_event": round(statistics.median(read_us), 2),
        "depth_other_at_end": depth,
        "db_bytes": db_bytes,
        "reopen_seconds": round(reopen_s, 3),
        "rss_kb_while_queued": rss_queued.get("VmRSS"),
        "peak_rss_kb": _rss_kb().get("VmHWM"),
    }


def run(backlog_sizes: tuple[int, ...] | list[int] = (10_000, 1_000_000)) -> dict[str, Any]:
    """Measure every backlog size (smallest first) and the largest/smallest per-event cost ratios."""
    sizes = sorted(backlog_sizes)
    workdir = Path(tempfile.mkdtemp(prefix="siemconn-queue-bench-"))
    try:
        results = [asyncio.run(_measure(s, workdir)) for s in sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    small, large = results[0], results[-1]
    return {
        "page_events": PAGE_EVENTS,
        "batch_events": BATCH_EVENTS,
        "results": results,
        "commit_ratio": round(large["commit_page_us_per_event"] / small["commit_page_us_per_event"], 3),
        "read_ack_ratio": round(
            large["read_batch_ack_us_per_event"] / small["read_batch_ack_us_per_event"], 3
        ),
        "flat": (
            large["commit_page_us_per_event"] <= 1.2 * small["commit_page_us_per_event"]
            and large["read_batch_ack_us_per_event"] <= 1.2 * small["read_batch_ack_us_per_event"]
        ),
        "peak_rss_kb": large["peak_rss_kb"],
    }


def ackqueue_baseline(backlogs: tuple[int, ...] = (2_000, 20_000), probe: int = 500) -> dict[int, float]:
    """persist-queue SQLiteAckQueue: get+ack per second after `backlog` acked rows were left uncleared."""
    from persistqueue import SQLiteAckQueue
    from persistqueue.serializers import json as pq_json

    item = json.dumps(_page(1, 1)[0])
    out: dict[int, float] = {}
    for backlog in backlogs:
        d = tempfile.mkdtemp(prefix="siemconn-ackq-")
        try:
            q = SQLiteAckQueue(d, auto_commit=True, multithreading=True, serializer=pq_json)
            for _ in range(backlog + probe):
                q.put(item)
            for _ in range(backlog):
                q.ack(q.get(block=False))
            t = time.perf_counter()
            for _ in range(probe):
                q.ack(q.get(block=False))
            out[backlog] = round(probe / (time.perf_counter() - t), 1)
            q.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000", help="comma-separated backlog sizes")
    ap.add_argument("--baseline", action="store_true", help="also measure persist-queue's SQLiteAckQueue")
    args = ap.parse_args(argv)
    report = run(tuple(int(s) for s in args.sizes.split(",")))
    if args.baseline:
        report["ackqueue_get_ack_per_s_by_acked_rows"] = ackqueue_baseline()
    print(json.dumps(report, indent=2))
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
