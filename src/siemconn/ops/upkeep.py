"""Memory upkeep of a running service (issue 30): what keeps its resident size flat over months.

Two steps, both from ops: a full collection (`gctune.Sweep`, the cyclic garbage the paused collector
leaves) and the heap's free memory handed back to the OS (`malloc.Trimmer`). They run once a minute from
the service's periodic loop (`periodic`), the trim right after the collection so it returns what the
collection freed. The trim also runs `TRIM_SETTLE` seconds after a pull ends (`pull_ended`) if no pull
runs then: that pull's end asks again. By then the page's batches have reached the writers' sockets, so
between two polls the process holds what it keeps (why, and the figures: ops/malloc.py and
docs/performance.md).

Invariants: nothing here changes what is delivered, only when memory is collected and returned; at most
one settle timer is pending; after `stop` none is pending and none is started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from siemconn.ops.gctune import Sweep
from siemconn.ops.malloc import Trimmer

__all__ = ["TRIM_SETTLE", "MemoryUpkeep"]

TRIM_SETTLE = 1.0  # seconds after a pull ends before the trim, if no pull runs by then


class MemoryUpkeep:
    """The collection and the trim of one service; `busy()` tells whether a pull runs now."""

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        sweep: Sweep | None = None,
        trimmer: Trimmer | None = None,
        settle: float = TRIM_SETTLE,
    ) -> None:
        self._busy = busy
        self.sweep = sweep or Sweep()
        self.trimmer = trimmer or Trimmer()
        self._settle = settle
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False

    def periodic(self) -> None:
        """From the service's periodic loop: the minute's collection, then the minute's trim."""
        self.sweep.due()
        self.trimmer.due()

    def pull_ended(self) -> None:
        """A pull ended (however): trim `settle` s from now unless a pull runs then."""
        if self._handle is None and self.trimmer.enabled and not self._stopped:
            self._handle = asyncio.get_running_loop().call_later(self._settle, self._settled)

    def stop(self) -> None:
        """The service stops: no settle trim is pending or started any more."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _settled(self) -> None:
        self._handle = None
        if not self._stopped and not self._busy():
            self.trimmer.quiet()
