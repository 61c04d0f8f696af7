"""Process-wide malloc tuning for `siemconn run`: one glibc malloc arena for the process.

Why: the working set is a few large, short-lived buffers per API page (the response body, the payloads
joined for the queue row, the SQLite record) plus the small objects of a parsed page, and half of that
work runs on the queue's SQLite worker thread. glibc gives that thread its own arena, and each arena keeps
its own free memory at its own high-water mark; one arena (`mallopt(M_ARENA_MAX, 1)`, what
MALLOC_ARENA_MAX=1 does) lowers the peak RSS. The shared arena lock is rarely contended: there are two
threads, and one of them holds the GIL most of the time. The figures, and the settings measured and not
adopted, are in docs/performance.md.

Free memory handed back (`Trimmer`, issue 30): freed page-sized buffers leave holes in the heap that glibc
keeps resident; a process that runs for months should hold what it uses, not its past high-water marks.
`malloc_trim(0)` once a minute (`MALLOC_TRIM_EVERY`, called by the service's periodic loop right after
its full collection) returns every free page of the heap to the OS, the middle of the heap included.
Once a minute, not per page: per page it cost measurable CPU in page faults (docs/performance.md).
And when the service goes quiet (`Trimmer.quiet`, called by ops/upkeep.py a second after a pull ended
while no other pull runs, at most once every `MALLOC_TRIM_QUIET_GAP` seconds): between two polls the
process then holds what it keeps, not the previous poll's free buffers. Without it the resident size
between polls was the working level most of the time and lower only for the few seconds after the
minute's trim, so a sample taken at a given moment read either level (what the trim after a pull buys, in
docs/performance.md). A continuous backfill never goes quiet and trims once a minute.

Invariants: nothing here changes behaviour; operators who set glibc's own MALLOC_* variables keep their
values (the trim still runs: it only returns free memory), `SIEMCONN_TUNING=off` leaves malloc at its
defaults (no trim either), and non-glibc platforms are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable, Mapping

__all__ = [
    "ARENA_MAX",
    "MALLOC_TRIM_EVERY",
    "MALLOC_TRIM_QUIET_GAP",
    "Trimmer",
    "malloc_settings",
    "tune_process",
]

MALLOC_TRIM_EVERY = 60.0  # seconds between two malloc_trim(0) calls of a running service
MALLOC_TRIM_QUIET_GAP = 2.0  # the least seconds between two trims when the service goes quiet

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENA_MAX = 1
_MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "GLIBC_TUNABLES")


def malloc_settings(environ: Mapping[str, str], platform: str) -> dict[int, int] | str:
    """The mallopt() calls to make, or why none are made (pure: decided from the env and platform)."""
    if environ.get("SIEMCONN_TUNING", "").strip().lower() == "off":
        return "left as is (SIEMCONN_TUNING=off)"
    if not platform.startswith("linux"):
        return f"left as is (not glibc on {platform})"
    if any(name in environ for name in _MALLOC_ENV):
        return "left as is (set in the environment)"
    return {_M_ARENA_MAX: ARENA_MAX}


def _apply_mallopt(settings: dict[int, int]) -> str:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present on glibc only (musl's mallopt does nothing)
    except (OSError, AttributeError):
        return "left as is (not glibc)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    failed = [param for param, value in settings.items() if mallopt(param, value) != 1]
    if failed:
        return f"glibc mallopt refused {failed}"
    return f"glibc arena_max={ARENA_MAX}"


def tune_process(environ: Mapping[str, str] | None = None) -> str:
    """Apply the malloc setting described in the module docstring; returns what was done, for the log.

    Call once, early in `siemconn run`, before the queue's worker thread starts.
    """
    plan = malloc_settings(os.environ if environ is None else environ, sys.platform)
    return plan if isinstance(plan, str) else _apply_mallopt(plan)


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's malloc_trim(0) as a callable, or None where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


class Trimmer:
    """Hands the heap's free memory back to the OS (module docstring).

    `due()` is called from the service's periodic loop; it trims when `every` seconds passed since the last
    trim (or since it was made). `quiet()` is called when the service's work has settled; it trims when
    `quiet_gap` seconds passed since the last trim. Off with SIEMCONN_TUNING=off and off glibc.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        platform: str = sys.platform,
        *,
        every: float = MALLOC_TRIM_EVERY,
        quiet_gap: float = MALLOC_TRIM_QUIET_GAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        off = env.get("SIEMCONN_TUNING", "").strip().lower() == "off" or not platform.startswith("linux")
        self._trim = None if off else _malloc_trim()
        self._every = every
        self._quiet_gap = quiet_gap
        self._clock = clock
        self._last = clock()
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def due(self) -> bool:
        """Trim if it is time; returns whether it trimmed."""
        return self._trim_after(self._every)

    def quiet(self) -> bool:
        """The service's work has settled: trim unless the last trim was under `quiet_gap` s ago."""
        return self._trim_after(self._quiet_gap)

    def _trim_after(self, gap: float) -> bool:
        if self._trim is None or self._clock() - self._last < gap:
            return False
        self._trim()
        self._last = self._clock()
        self.trims += 1
        return True
