"""Garbage-collector tuning for `siemconn run`: the generational collector is paused while a page is alive.

Why: parsing a 1,000-event API page allocates tens of thousands of containers in one C call. With the
collector running, every 700 new containers trigger a young collection that walks the page built so far,
and the survivors are walked again by the older generations: repeated work on objects that are all alive
until the page is committed. Paused for the parse only (`parse_paused`), the page's objects are still
walked by the first young collection after it, and again by the older ones while the page waits for its
commit. Paused from the parse until the page is dropped (`PageHold`, the lock the streams' pulls share
from parsing a page to committing it), they are never walked: CPython counts a freed container against
the allocations that trigger a collection, so a page allocated and freed while paused leaves the count
where it was. A parsed JSON document holds no reference cycles, so pausing frees nothing later than it
would be freed anyway; what other code leaves as cyclic garbage meanwhile is collected by a young
collection when the next holder takes the pause over, or by the collector once it runs again. The
measured effect (CPU and RSS, and what was measured and not kept) is in docs/performance.md.

The older generations (issue 30): while events flow, one pull's hold is taken over by the next, and the
takeover collects only the young generation; between pulls too few objects are allocated to start an
automatic collection. So generations 1 and 2 were never collected while events flowed, and the cyclic
garbage that outlived a young collection (httpx requests and responses, asyncio events of the connection
pool) piled up, and resident memory with it (the measurements: docs/performance.md). `Sweep`
runs a full collection once a minute (`SWEEP_EVERY`) from the service's periodic loop, whatever the
holds do, so what is cyclic garbage is freed within a minute. A full collection walks every container
(~40,000-50,000 after start-up): tens of milliseconds once a minute (figures: docs/performance.md).

Invariants: nothing here changes behaviour, only when the collector runs; every pause ends (in a
`finally`, or on the event loop's next turn after the hold is released, which is after the holder has
dropped its page: it does so before its next await) and only re-enables a collector that was enabled
when the pause began; `SIEMCONN_GC=off` (read once at import) leaves the collector alone. gc.freeze()
after start-up was measured too and not kept (no gain).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = ["GC_SETTINGS", "SWEEP_EVERY", "GcSettings", "PageHold", "Sweep", "gc_settings", "parse_paused"]

SWEEP_EVERY = 60.0  # seconds between two full collections of a running service (`Sweep`)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class GcSettings:
    """Which collector adjustments are on."""

    pause_parse: bool


def gc_settings(environ: Mapping[str, str]) -> GcSettings:
    """The adjustments SIEMCONN_GC asks for (pure: decided from the env)."""
    return GcSettings(pause_parse=environ.get("SIEMCONN_GC", "").strip().lower() != "off")


GC_SETTINGS = gc_settings(os.environ)


def parse_paused(loads: Callable[[bytes], _T], content: bytes) -> _T:
    """loads(content) with the collector paused (when GC_SETTINGS.pause_parse), restored afterwards."""
    if not GC_SETTINGS.pause_parse or not gc.isenabled():
        return loads(content)
    gc.disable()
    try:
        return loads(content)
    finally:
        gc.enable()


class PageHold(asyncio.Lock):
    """An asyncio.Lock that pauses the collector while it is held and until the event loop's next turn
    after its release (when the holder has dropped its page; see the module docstring).

    A holder that acquires it while the previous holder's pause is still on takes that pause over (after
    a young collection of what was allocated meanwhile), so the collector is not switched on and off
    between two pages. Only a pause this lock began re-enables the collector.
    """

    def __init__(self) -> None:
        super().__init__()
        self._paused = False  # this lock disabled the collector and has not re-enabled it yet
        self._resume: asyncio.Handle | None = None

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        if self._resume is not None:  # the previous holder's pause is still on: take it over
            self._resume.cancel()
            self._resume = None
            gc.collect(0)  # what other code allocated meanwhile (the previous page is gone by now)
        elif GC_SETTINGS.pause_parse and gc.isenabled():
            gc.disable()
            self._paused = True
        return True

    def release(self) -> None:
        super().release()
        if self._paused and self._resume is None:
            try:
                self._resume = asyncio.get_running_loop().call_soon(self._end_pause)
            except RuntimeError:  # no running loop (not the service's use): end the pause now
                self._end_pause()

    def _end_pause(self) -> None:
        self._resume = None
        if self._paused:
            self._paused = False
            gc.enable()


class Sweep:
    """A full collection at most once every `every` seconds, called from the service's periodic loop
    (module docstring: the older generations). Off with SIEMCONN_GC=off, which leaves the collector alone.
    """

    def __init__(
        self,
        settings: GcSettings | None = None,
        *,
        every: float = SWEEP_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on = (settings or GC_SETTINGS).pause_parse
        self._every = every
        self._clock = clock
        self._last = clock()
        self.sweeps = 0

    def due(self) -> int | None:
        """Collect every generation if it is time; returns the unreachable objects found, or None."""
        if not self._on or self._clock() - self._last < self._every:
            return None
        found = gc.collect()
        self._last = self._clock()
        self.sweeps += 1
        return found
