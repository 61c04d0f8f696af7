"""A miniature connector around the durable queue, run as a subprocess by tests/reliability/test_queue_kill.py.

    python queue_worker.py run  DATA_DIR OUT_DIR [--total N] [--page P] [--batch B] [--overlap K]
                                [--kill-at STEP --kill-nth K] [--dests a,b]
    python queue_worker.py hold DATA_DIR [--pages N]   (commit, print READY, sleep until killed)

`run` plays source and sink: per key it "fetches" the events after the committed checkpoint (plus
`overlap` already-committed ones, as a re-fetch after a crash would), commits the page, then for every
destination reads batches, "sends" them by appending the payload lines to OUT_DIR/<dest>.out in one
os.write (the destination accepted them), and acks. With --kill-at it SIGKILLs itself at the K-th time
it reaches STEP: after_fetch (before commit), after_commit, after_read (before send), after_send (before
ack). It exits 0 when every key is fetched to the end and every destination is drained.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from siemconn.queue import DurableQueue

__all__ = ["KEYS", "Killer", "fetch", "hold", "main", "run"]

KEYS = ("audit", "detections", "entity_scoring.host")


class Killer:
    def __init__(self, step: str | None, nth: int) -> None:
        self.step = step
        self.nth = nth
        self.seen: dict[str, int] = {}

    def __call__(self, step: str) -> None:
        self.seen[step] = self.seen.get(step, 0) + 1
        if step == self.step and self.seen[step] == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)


def fetch(
    key: str, checkpoint: int | None, total: int, page: int, overlap: int
) -> tuple[list[dict[str, Any]], int]:
    """The fake API: events with ids 1..total per key; `checkpoint` is the next id to fetch."""
    start = 1 if checkpoint is None else max(1, checkpoint - overlap)
    ids = range(start, min(total, start + page - 1) + 1)
    events = [{"id": i, "key": key, "text": f"event {i} of {key} \u00e9"} for i in ids]
    nxt = (ids[-1] + 1) if len(ids) else (checkpoint or 1)
    return events, max(nxt, checkpoint or 1)


async def run(args: argparse.Namespace) -> int:
    dests = args.dests.split(",")
    kill = Killer(args.kill_at, args.kill_nth)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fds = {d: os.open(out_dir / f"{d}.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) for d in dests}
    q = await DurableQueue.open(Path(args.data_dir), dests, housekeeping_every=3)
    try:
        while True:
            fetched_any = False
            for key in KEYS:
                cp = await q.checkpoint(key)
                if cp is not None and cp > args.total:
                    continue
                events, nxt = fetch(key, cp, args.total, args.page, args.overlap)
                kill("after_fetch")
                await q.commit_page(key, events, nxt)
                kill("after_commit")
                fetched_any = True
            for d in dests:
                while (batch := await q.read_batch(d, args.batch)) is not None:
                    kill("after_read")
                    os.write(fds[d], "".join(e.payload + "\n" for e in batch.events).encode("ascii"))
                    kill("after_send")
                    await q.ack(batch)
            if not fetched_any and all([await q.depth(d) == 0 for d in dests]):
                break
    finally:
        await q.close()
    return 0


async def hold(args: argparse.Namespace) -> int:
    q = await DurableQueue.open(Path(args.data_dir), ["alpha", "beta"])
    for i in range(args.pages):
        await q.commit_page("detections", [{"id": 10 * i + j} for j in range(1, 6)], 10 * i + 6)
    await q.record_poll("detections", 1_700_000_000.0)
    batch = await q.read_batch("alpha", 1000)
    if batch is not None:
        await q.ack(batch)
    print("READY", flush=True)
    while True:
        time.sleep(3600)


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("data_dir")
    r.add_argument("out_dir")
    r.add_argument("--total", type=int, default=60)
    r.add_argument("--page", type=int, default=7)
    r.add_argument("--batch", type=int, default=5)
    r.add_argument("--overlap", type=int, default=2)
    r.add_argument("--kill-at", default=None)
    r.add_argument("--kill-nth", type=int, default=1)
    r.add_argument("--dests", default="a,b")
    h = sub.add_parser("hold")
    h.add_argument("data_dir")
    h.add_argument("--pages", type=int, default=3)
    args = ap.parse_args()
    return asyncio.run(run(args) if args.cmd == "run" else hold(args))


if __name__ == "__main__":
    sys.exit(main())
