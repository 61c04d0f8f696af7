"""siemconn.ops.upkeep: the trim a settle time after a pull ends, only while no pull runs, one timer at a
time, none after stop; the minute's collection and trim from the periodic loop."""

from __future__ import annotations

import asyncio

import pytest

from siemconn.ops.gctune import GC_SETTINGS, Sweep
from siemconn.ops.malloc import Trimmer
from siemconn.ops.upkeep import MemoryUpkeep


def _trimmer(now: list[float]) -> Trimmer:
    t = Trimmer({}, "linux", every=60.0, quiet_gap=0.0, clock=lambda: now[0])
    if not t.enabled:
        pytest.skip("not glibc")
    return t


async def test_a_pull_end_trims_after_the_settle_time_unless_a_pull_runs_then() -> None:
    busy = [False]
    upkeep = MemoryUpkeep(lambda: busy[0], trimmer=_trimmer([0.0]), settle=0.3)
    upkeep.pull_ended()
    upkeep.pull_ended()  # a second end while one timer is pending: still one trim
    await asyncio.sleep(0)
    assert upkeep.trimmer.trims == 0  # not before the settle time
    await asyncio.sleep(0.6)
    assert upkeep.trimmer.trims == 1
    busy[0] = True
    upkeep.pull_ended()
    await asyncio.sleep(0.6)
    assert upkeep.trimmer.trims == 1  # a pull ran when the timer fired: that pull's end asks again
    busy[0] = False
    upkeep.pull_ended()
    await asyncio.sleep(0.6)
    assert upkeep.trimmer.trims == 2


async def test_stop_cancels_the_pending_trim_and_starts_none() -> None:
    upkeep = MemoryUpkeep(lambda: False, trimmer=_trimmer([0.0]), settle=0.05)
    upkeep.pull_ended()
    upkeep.stop()
    upkeep.pull_ended()
    await asyncio.sleep(0.3)
    assert upkeep.trimmer.trims == 0


def test_periodic_runs_the_minutes_collection_then_trim() -> None:
    now = [0.0]
    sweep = Sweep(every=60.0, clock=lambda: now[0])
    upkeep = MemoryUpkeep(lambda: False, sweep=sweep, trimmer=_trimmer(now))
    upkeep.periodic()
    assert (sweep.sweeps, upkeep.trimmer.trims) == (0, 0)
    now[0] = 60.0
    upkeep.periodic()
    assert upkeep.trimmer.trims == 1
    assert sweep.sweeps == (1 if GC_SETTINGS.pause_parse else 0)  # SIEMCONN_GC=off: collector left alone
