"""Memory of the real service over a long run: RSS sampled from outside, traced Python memory and
SQLite's own memory reported from inside.

    conn = TracedConnector(tmp_path, fake.url, servers, trace=True)   # a Connector (support.e2e)
    conn.start(); watch = RssWatch(conn.pid).start()
    ...; watch.stop()
    watch.baselines(60.0)          # the lowest RSS of each 60 s window, KiB
    conn.inner_samples()           # [(t, traced bytes, sqlite bytes)], written once a second

`python -m support.memwatch run --config X` is `python -m siemconn run --config X` with one thread
added that writes `SIEMCONN_MEMWATCH_OUT` once a second: tracemalloc's current traced size (when
`SIEMCONN_MEMWATCH_TRACE=1` started tracemalloc with one frame before siemconn was imported; with
`SIEMCONN_MEMWATCH_SNAPSHOTS=DIR`, SIGUSR2 dumps a snapshot to DIR/snap-N.trace) and
`sqlite3_memory_used()` (the library `_sqlite3` is linked to) and glibc's `mallinfo2()`. The service
code that runs is the same; the malloc setting is made before that thread starts, as `siemconn run`
makes it before its own threads.

The baseline is the lowest sample of a window, not the mean: a page being parsed lifts single samples,
the floor is what stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.e2e import REPO, Connector

__all__ = ["RssWatch", "TracedConnector", "growth", "rss_kib", "sqlite_memory_used", "window_floors"]


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def window_floors(samples: list[tuple[float, int]], window: float) -> list[tuple[float, int]]:
    """(window start, lowest value) of each full `window` seconds of (t, value) samples."""
    if not samples:
        return []
    t0 = samples[0][0]
    floors: dict[int, int] = {}
    for t, v in samples:
        k = int((t - t0) // window)
        floors[k] = min(v, floors.get(k, v))
    last_full = int((samples[-1][0] - t0) // window)  # the last window is partial: left out
    return [(k * window, v) for k, v in sorted(floors.items()) if k < last_full]


def growth(floors: list[tuple[float, int]], after: float) -> tuple[int, int, int]:
    """(start, highest, end) of the floors after `after` s: start and end are the lowest floor of the
    first and of the last few windows (a quarter of them, at most 5), so a page held across one minute's
    sample does not read as growth; the rise is end - start, highest is reported beside it."""
    kept = [v for t, v in floors if t >= after]
    assert len(kept) >= 2, f"too few windows after warm-up: {floors}"
    span = max(1, min(5, len(kept) // 4))
    return min(kept[:span]), max(kept), min(kept[-span:])


class RssWatch:
    """Samples a process's VmRSS every `every` s from a thread until stopped."""

    def __init__(self, pid: int, every: float = 1.0, out: Path | None = None) -> None:
        self.pid = pid
        self.out = out
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._t0 = time.monotonic()
        if out is not None:
            # created here: a missing directory would otherwise end the sampling thread at its first write
            out.parent.mkdir(parents=True, exist_ok=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            kib = rss_kib(self.pid)
            if kib is None:
                return
            sample = (time.monotonic() - self._t0, kib)
            self.samples.append(sample)
            if self.out is not None:
                with self.out.open("a", encoding="ascii") as f:
                    f.write(f"{sample[0]:.1f}\t{sample[1]}\n")

    def start(self) -> RssWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class TracedConnector(Connector):
    """A Connector whose service runs under `python -m support.memwatch` (see the module docstring)."""

    def __init__(
        self, workdir: Path, base_url: str, servers: list[dict[str, Any]], *, trace: bool, **config: Any
    ) -> None:
        super().__init__(workdir, base_url, servers, **config)
        self.inner_path = workdir / "inner.tsv"
        self.env["SIEMCONN_MEMWATCH_OUT"] = str(self.inner_path)
        self.env["SIEMCONN_MEMWATCH_TRACE"] = "1" if trace else "0"
        # SIEMCONN_SOAK_SRC: another tree's src/ (e.g. `git archive REF src | tar -x`) runs instead, to
        # measure the same run against an earlier version
        self.env["PYTHONPATH"] = os.pathsep.join(
            [
                *filter(None, [os.environ.get("SIEMCONN_SOAK_SRC")]),
                str(REPO / "tests"),
                *filter(None, [os.environ.get("PYTHONPATH")]),
            ]
        )

    def start(self, preexec_fn: Callable[[], object] | None = None) -> TracedConnector:
        import subprocess

        self.runs += 1
        out = open(self.out_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "support.memwatch", "run", "--config", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        out.close()
        return self

    def inner_samples(self) -> list[tuple[float, int, int, int, int]]:
        """(seconds since start, traced bytes or 0, SQLite bytes, malloc in use, malloc heap held), one
        a second (the malloc figures 0 without glibc's mallinfo2)."""
        rows = []
        for line in self.inner_path.read_text().splitlines():
            t, traced, sq, in_use, held = line.split("\t")
            rows.append((float(t), int(traced), int(sq), int(in_use), int(held)))
        return rows


def sqlite_memory_used() -> int:
    """sqlite3_memory_used(): bytes SQLite holds in this process, all connections together (the library
    the sqlite3 module is linked to: a Python built with SQLite linked in statically would not share it)."""
    return _sqlite_memory_reader()()


def _sqlite_memory_reader() -> Callable[[], int]:
    """sqlite_memory_used's reader, the library loaded once: a CDLL per call leaves a class and its cycles
    each second in the process being measured (the report thread runs inside the service)."""
    import _sqlite3  # noqa: F401 - loads the library the sqlite3 module uses, so ctypes finds the same

    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    fn = lib.sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return lambda: int(fn())


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
        + ("uordblks", "fordblks", "keepcost")
    ]


def _malloc_in_use() -> Callable[[], tuple[int, int]]:
    """(bytes malloc has handed out and not got back, bytes of heap it holds) from glibc's mallinfo2(),
    or (0, 0) without it: the first flat and the second growing is fragmentation, both growing a leak."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return lambda: (0, 0)
    fn.restype = _MallInfo2

    def read() -> tuple[int, int]:
        m = fn()
        return int(m.uordblks + m.hblkhd), int(m.arena + m.hblkhd)

    return read


def _report(path: str, stop: threading.Event) -> None:
    sqlite_used = _sqlite_memory_reader()
    malloc_used = _malloc_in_use()
    t0 = time.monotonic()
    with open(path, "a", encoding="ascii") as f:
        while not stop.wait(1.0):
            traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
            in_use, held = malloc_used()
            f.write(f"{time.monotonic() - t0:.1f}\t{traced}\t{sqlite_used()}\t{in_use}\t{held}\n")
            f.flush()


def _main() -> int:
    if os.environ.get("SIEMCONN_MEMWATCH_TRACE") == "1":
        tracemalloc.start(int(os.environ.get("SIEMCONN_MEMWATCH_FRAMES", "1")))
    # the malloc setting `siemconn run` makes first, made before this module's thread exists: a thread
    # started earlier would get a malloc arena of its own, which the service's threads may then share
    from siemconn.ops.malloc import tune_process

    tune_process()
    snapshots = os.environ.get("SIEMCONN_MEMWATCH_SNAPSHOTS")
    if snapshots and tracemalloc.is_tracing():
        import signal

        taken = [0]

        def dump(_sig: int, _frame: object) -> None:  # SIGUSR2: a tracemalloc snapshot to the directory
            taken[0] += 1
            tracemalloc.take_snapshot().dump(os.path.join(snapshots, f"snap-{taken[0]}.trace"))

        signal.signal(signal.SIGUSR2, dump)
    stop = threading.Event()
    threading.Thread(
        target=_report, args=(os.environ["SIEMCONN_MEMWATCH_OUT"], stop), name="memwatch", daemon=True
    ).start()
    from siemconn.cli import main

    try:
        return main(sys.argv[1:])
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(_main())
