"""Process-wide malloc setting for `siemconn run` (measured in docs/performance.md).

The connector's working set is a few large, short-lived buffers per API page (the response body, the
JSON payloads joined for the queue row, the SQLite record, each ~1.2 MB for 1,000 events) and ~5 MB of
small objects per parsed page. Half of that work runs on the queue's SQLite worker thread, and glibc gives
that thread its own malloc arena: each arena then keeps its own free memory at its own high-water mark.
One arena for the process (`mallopt(M_ARENA_MAX, 1)`, what MALLOC_ARENA_MAX=1 does) lowered the peak
RSS of the 120,000-event bench by ~4 MB with no measurable CPU cost (two threads, and one of them holds
the GIL most of the time, so the shared arena lock is rarely contended).

Measured and NOT adopted (same bench, same session): a fixed mmap threshold (512 KB or 256 KB) so page
buffers are unmapped when freed lowered the peak by another ~5 MB but cost 5-10 us of CPU per event
(mmap/munmap and page faults for every page buffer); freezing the start-up objects and a 10,000-object
young-generation threshold for the garbage collector raised the peak by ~10 MB (objects in reference
cycles, e.g. around HTTP responses, lived longer) for no CPU gain end to end.

Nothing here changes behaviour. Operators who set glibc's own MALLOC_* variables keep their values, and
`SIEMCONN_TUNING=off` leaves malloc at its defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping

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
