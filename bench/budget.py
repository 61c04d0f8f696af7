"""The size budget's cost on the hot path: formatting and framing a batch with and without `max_message_size`.

`siemconn.syslog.wire.prepare_batch` is what a writer does with each batch before the write. This runs it
on batches read from a real queue (pages of the fake tenant's events, same stream mix as `make bench`,
no big events), for one TCP server in the default format with LF framing, best of ROUNDS rounds of CPU
time per batch:

  * none     no budget (the default for TCP: the behaviour before budgets existed)
  * 8000     `max_message_size` 8000, every event under it: the check is one length comparison per page
             slice, nothing is parsed
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
from siemconn.queue import Batch, DurableQueue
from siemconn.syslog.budget import Oversizer
from siemconn.syslog.format import Formatter
from siemconn.syslog.wire import prepare_batch

BATCH = 500  # the default batch_size
PAGE = 1000
ROUNDS = 7
REPEAT = 20
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


def _per_event_ns(server: ServerConfig, batches: list[Batch]) -> tuple[float, int]:
    """Best-of-ROUNDS CPU ns per event of `prepare_batch`, and the events the policy handled."""
    formatter = Formatter(server, hostname="bench")
    sizer = Oversizer(server, formatter)
    events = sum(len(b) for b in batches) * REPEAT
    best = float("inf")
    oversize = 0
    for _ in range(ROUNDS):
        oversize = 0
        t0 = time.process_time_ns()
        for _ in range(REPEAT):
            for b in batches:
                prepared = prepare_batch(b, server, formatter, NOW, sizer)
                if prepared.oversize is not None:
                    oversize += len(prepared.oversize.events)
        best = min(best, (time.process_time_ns() - t0) / events)
    return best, oversize // REPEAT


def main() -> int:
    small = asyncio.run(_batches(big_every=0))
    mixed = asyncio.run(_batches(big_every=100))
    n = sum(len(b) for b in small)
    none, _ = _per_event_ns(_server(), small)
    budget, o1 = _per_event_ns(_server(max_message_size=8000), small)
    assert o1 == 0
    none_mixed, _ = _per_event_ns(_server(), mixed)
    trim, o2 = _per_event_ns(_server(max_message_size=8000, oversize="trim"), mixed)
    print(f"python {sys.version.split()[0]}, {n} events in batches of {BATCH}, best of {ROUNDS} rounds")
    print(f"  none   {none:8.1f} ns/event   (no budget)")
    print(f"  8000   {budget:8.1f} ns/event   (budget, every event under it: {budget - none:+.1f} ns)")
    print(f"  none   {none_mixed:8.1f} ns/event   (no budget, 1 big event in 100)")
    print(
        f"  trim   {trim:8.1f} ns/event   (budget 8000, trim: {o2} of {n} events trimmed, "
        f"{(trim - none_mixed) * n / max(o2, 1) / 1000:.0f} us per trimmed event)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
