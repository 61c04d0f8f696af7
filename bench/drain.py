"""Backlog drain: a stored backlog of N events (default 1,000,000) goes out to one TCP server.

`build(data_dir, n, destination)` fills a queue with pages of 1,000 of the bench's generated events (the
fake tenant's generator, same stream mix as floor.py, ids renumbered), nothing delivered. `run.py` then
starts `siemconn run` on a copy of that data_dir with no pull due (pull_at_startup off, a yearly cron), so
everything the process does is read, format, send and ack; the sink counts lines and the figures are
events/s from the first to the last line, CPU of the process per event and its peak RSS.

    python bench/drain.py DATA_DIR [--events 1000000]     # build only
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor  # noqa: E402

from siemconn.queue import DurableQueue  # noqa: E402

PAGE = 1000


async def _build(data_dir: Path, events: int, destination: str) -> float:
    pool: list[dict[str, Any]] = [e for p in floor._pages() for e in orjson.loads(p)["events"]]
    t0 = time.perf_counter()
    q = await DurableQueue.open(data_dir, [destination], max_events=events + 10 * PAGE)
    try:
        n = 0
        while n < events:
            k = min(PAGE, events - n)
            page = [{**pool[(n + i) % len(pool)], "id": n + i + 1} for i in range(k)]
            await q.commit_page("detections", page, n + k + 1)
            n += k
        assert await q.depth(destination) == events
    finally:
        await q.close()
    return time.perf_counter() - t0


def build(data_dir: Path, events: int, destination: str) -> float:
    """Fill a fresh queue in data_dir with `events` undelivered events for `destination`; seconds taken.
    Runs in a child process, so the caller's memory figures (the queue bench's peak RSS) stay its own."""
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, str(data_dir), "--events", str(events), "--destination", destination]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--destination", default="bench_tcp")
    args = ap.parse_args()
    print(f"built in {asyncio.run(_build(args.data_dir, args.events, args.destination)):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
