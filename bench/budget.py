"""The size budget's cost on the hot path: formatting and framing a batch with and without `max_message_size`.

`siemconn.syslog.wire.prepare_batch` is what a writer does with each batch before the write. This runs it
on batches read from a real queue (pages of the fake tenant's events, same stream mix as `make bench`,
no big events), for one TCP server in the default format with LF framing, best of ROUNDS rounds of CPU
time per batch:

  * none     no budget (the default for TCP: the behaviour before budgets existed)
  * 8000     `max_message_size` 8000, every event under it: the check is one length comparison per page
             slice, nothing is parsed
  * check    the check alone (the longest payload of each page slice, compared with the limit)
  * trim     `max_message_size` 8000 and `oversize` trim, one big event in a hundred (the fake tenant's
             own ratio of large events: about 2 % of its events are over 8,000 bytes): the cost of each
             event trimmed, per event of the batch

    python bench/budget.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siemconn.config import ServerConfig
from siemconn.devtools.events import EventFactory
from siemconn.events.batch import Batch
from siemconn.queue import DurableQueue
from siemconn.syslog.budget import Oversizer
from siemconn.syslog.format import Formatter
from siemconn.syslog.wire import prepare_batch

BATCH = 500  # the default batch_size
PAGE = 1000
ROUNDS = 15
REPEAT = 10
NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)
MIX = ("detections",) * 10 + ("audits", "entity_scoring")


def _server(**kw: Any) -> ServerConfig:
    base = {"name": "b", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 514}
    return ServerConfig.model_validate(base | kw)


async def _batches(big_every: int) -> list[Batch]:
    factory = EventFactory(seed=17, big_every=big_every)
    with tempfile.TemporaryDirectory() as d:
        q = await DurableQueue.open(Path(d), ["b"])
        try:
            next_id = {s: 1 for s in MIX}
            for p in range(4):
                stream = MIX[p % len(MIX)]
                docs = []
                for _ in range(PAGE):
                    docs.append(factory.make(stream, next_id[stream], 1.7e9).doc)
                    next_id[stream] += 1
                await q.commit_page("audit" if stream == "audits" else stream, docs, p + 1)
            out: list[Batch] = []
            while (b := await q.read_batch("b", BATCH)) is not None:
                out.append(b)
                await q.ack(b)
            return out
        finally:
            await q.close()


def _measure(cases: dict[str, tuple[ServerConfig, list[Batch]]]) -> dict[str, tuple[float, int]]:
    """Best-of-ROUNDS CPU ns per event of `prepare_batch` per case, and the events its policy handled.
    The cases alternate within each round, so a busy machine slows them alike."""
    best = {name: float("inf") for name in cases}
    handled = dict.fromkeys(cases, 0)
    prepared_for = {
        name: (server, Formatter(server, hostname="bench"), batches)
        for name, (server, batches) in cases.items()
    }
    for _ in range(ROUNDS):
        for name, (server, formatter, batches) in prepared_for.items():
            sizer = Oversizer(server, formatter)
            events = sum(len(b) for b in batches) * REPEAT
            oversize = 0
            t0 = time.process_time_ns()
            for _ in range(REPEAT):
                for b in batches:
                    prepared = prepare_batch(b, server, formatter, NOW, sizer)
                    if prepared.oversize is not None:
                        oversize += len(prepared.oversize.events)
            best[name] = min(best[name], (time.process_time_ns() - t0) / events)
            handled[name] = oversize // REPEAT
    return {name: (best[name], handled[name]) for name in cases}


def _check_ns(batches: list[Batch]) -> float:
    """Best-of-ROUNDS CPU ns per event of the check itself: `max(map(len, payloads))` per page slice."""
    slices = [seg.payloads for b in batches for seg in b.segments]
    events = sum(map(len, slices)) * REPEAT * 10
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.process_time_ns()
        for _ in range(REPEAT * 10):
            for payloads in slices:
                max(map(len, payloads))
        best = min(best, (time.process_time_ns() - t0) / events)
    return best


def main() -> int:
    small = asyncio.run(_batches(big_every=0))
    mixed = asyncio.run(_batches(big_every=100))
    n = sum(len(b) for b in small)
    r = _measure(
        {
            "none": (_server(), small),
            "8000": (_server(max_message_size=8000), small),
            "none-mixed": (_server(), mixed),
            "trim": (_server(max_message_size=8000, oversize="trim"), mixed),
        }
    )
    assert r["8000"][1] == 0
    none, budget, none_mixed = r["none"][0], r["8000"][0], r["none-mixed"][0]
    trim, trimmed = r["trim"]
    print(f"python {sys.version.split()[0]}, {n} events in batches of {BATCH}, best of {ROUNDS} rounds")
    print(f"  none   {none:8.1f} ns/event   (no budget)")
    print(f"  8000   {budget:8.1f} ns/event   (budget, every event under it: {budget - none:+.1f} ns)")
    print(f"  check  {_check_ns(small):8.1f} ns/event   (the check alone: the longest payload of each slice)")
    print(f"  none   {none_mixed:8.1f} ns/event   (no budget, 1 big event in 100)")
    print(
        f"  trim   {trim:8.1f} ns/event   (budget 8000, trim: {trimmed} of {n} events trimmed, "
        f"{(trim - none_mixed) * n / max(trimmed, 1) / 1000:.0f} us per trimmed event)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
