"""Flat memory over a long run (issue 30): the real service against the fake tenant adding events at a
steady rate, one TCP server (rsyslogd), every event delivered exactly once, and memory after warm-up
inside a stated bound.

`SIEMCONN_SOAK_PROFILE` picks the traffic: `compressed` (the default: polls every second instead of every
5 s and ~160 events/s instead of 50, so `SIEMCONN_SOAK_MINUTES`, default 15, hold as many polls as 75
minutes of the issue's traffic), `issue` (the acceptance run: polls every 5 s, ~50 events/s) or `million`
(~320 events/s). The baseline is the lowest RSS (and traced size) of each minute, because a page being
parsed lifts single samples; growth is the lowest floor of the last few minutes less the lowest of the
first few after warm-up (a page held across one minute's samples lifts that minute's floor and is not
growth); the highest floor is reported beside it. Variants: plain (RSS only, as in production), traced
(tracemalloc on: traced Python memory and SQLite's own memory), metrics (`metrics_address` on and
`/metrics` scraped every second), and sighup (100 reloads spread over the run). docs/performance.md
quotes the FIGURE lines.

The fast tests (not soak) pin what was found: the full collection that frees the cyclic garbage
continuous page holds leave (test_gctune.py), the heap trim (test_malloc.py), the queue connection's
SQLite page cache bounded explicitly and a queue cycle that keeps nothing per page (test_memory.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.e2e import expected_keys, received_counts, serve_fake, summary, wait_until
from support.memwatch import RssWatch, TracedConnector, growth, window_floors
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port

pytestmark = pytest.mark.soak

MINUTES = float(os.environ.get("SIEMCONN_SOAK_MINUTES", "15"))
# (cron of every stream, the fake's generator interval in s, events it adds per stream each interval)
PROFILES: dict[str, tuple[str, float, int]] = {
    "compressed": ("* * * * * *", 0.1, 6),  # polls every second, ~160 events/s reach the service
    "issue": ("*/5 * * * * *", 0.1, 2),  # the acceptance: polls every 5 s, ~50 events/s
    "million": ("* * * * * *", 0.1, 12),  # ~320 events/s: 1,000,000 events in about 52 minutes
}
PROFILE = os.environ.get("SIEMCONN_SOAK_PROFILE", "compressed")
SCHEDULE, GENERATE_INTERVAL, GENERATE_COUNT = PROFILES[PROFILE]
# a fifth of the run (at least one minute) unless set: the issue measures from minute 10 of 60
WARMUP = 60 * float(os.environ.get("SIEMCONN_SOAK_WARMUP_MINUTES", max(1.0, MINUTES / 5)))
WINDOW = 60.0
RSS_BOUND_KIB = 512  # the acceptance: < 0.5 MB between minute 10 and minute 60
TRACED_BOUND_KIB = 256
SQLITE_BOUND = 4 * 1024 * 1024  # the page cache bound (queue/schema.py) plus schema and statements
# the traced variant with SIEMCONN_SOAK_OUT: seconds between two tracemalloc snapshots
SNAPSHOT_EVERY = float(os.environ.get("SIEMCONN_SOAK_SNAPSHOT_EVERY", "300"))


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    # compressed: 6 events per stream every 0.1 s, ~160 events/s reach the service (measured); the
    # default client does not see the entity score decreases the generator also adds
    # lean: the tenant keeps only each event's bodies (a million documents would not fit in memory)
    yield from serve_fake(generate_interval=GENERATE_INTERVAL, generate_count=GENERATE_COUNT, lean=True)


def _scrape(port: int, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
            counts[0] += 1
        except OSError:
            counts[1] += 1


def _figure(name: str, **values: object) -> None:
    print(f"FIGURE memory_soak {name} " + " ".join(f"{k}={v}" for k, v in values.items()))


@pytest.mark.timeout(MINUTES * 60 + 900)
@pytest.mark.parametrize("variant", ["plain", "traced", "metrics", "sighup"])
def test_memory_flat_after_warmup(
    tmp_path: Path, fake: FakeRux, rsyslog_factory: Callable[..., RsyslogReceiver], variant: str
) -> None:
    rsyslog = rsyslog_factory()
    extra: dict[str, object] = {"pull_at_startup": True}
    metrics_port = free_port()
    if variant == "metrics":
        extra["metrics_address"] = f"127.0.0.1:{metrics_port}"
    conn = TracedConnector(
        tmp_path / "svc",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        trace=variant == "traced",
        schedule=SCHEDULE,
        **extra,
    )
    duration = MINUTES * 60
    # SIEMCONN_SOAK_OUT=DIR with the traced variant: a tracemalloc snapshot every SNAPSHOT_EVERY s into
    # DIR (SIEMCONN_SOAK_FRAMES frames each, default 1), and the largest growths between the first one
    # after warm-up and the last are printed: what a rise consists of
    out_dir = os.environ.get("SIEMCONN_SOAK_OUT")
    if variant == "traced" and out_dir:
        conn.env["SIEMCONN_MEMWATCH_SNAPSHOTS"] = out_dir
        conn.env["SIEMCONN_MEMWATCH_FRAMES"] = os.environ.get("SIEMCONN_SOAK_FRAMES", "1")
    conn.start()
    conn.wait_log("siemconn_started", timeout=60)
    # SIEMCONN_SOAK_OUT=DIR: every RSS sample is also appended to DIR/rss-VARIANT.tsv as it is taken
    watch = RssWatch(conn.pid, out=Path(out_dir) / f"rss-{variant}.tsv" if out_dir else None).start()
    stop = threading.Event()
    scrapes = [0, 0]
    scraper = threading.Thread(target=_scrape, args=(metrics_port, stop, scrapes), daemon=True)
    if variant == "metrics":
        scraper.start()
    t0 = time.monotonic()
    reloads = 0
    snapshots: list[float] = []
    try:
        while time.monotonic() - t0 < duration:
            assert conn.alive(), conn.output()[-3000:]
            if (
                variant == "sighup"
                and reloads < 100
                and time.monotonic() - t0 >= (reloads + 1) * duration / 101
            ):
                conn.signal(signal.SIGHUP)
                reloads += 1
            if variant == "traced" and out_dir and time.monotonic() - t0 >= len(snapshots) * SNAPSHOT_EVERY:
                conn.signal(signal.SIGUSR2)
                snapshots.append(time.monotonic() - t0)
            time.sleep(0.5)
        stop.set()
        watch.stop()
        # every event the tenant holds now reaches the receiver exactly once. The tenant keeps adding, so
        # a count is not enough: a stream pulled just before `expected` was taken gets the rest at the
        # next poll, while the others' newer events already make up the count (an hour-long run stopped
        # with 4 events of one stream still due at the next poll, its checkpoint before them)
        expected = expected_keys(fake)

        def all_arrived() -> bool:
            lines = rsyslog.raw_lines()
            return len(lines) >= len(expected) and not expected - received_counts(lines).keys()

        wait_until(all_arrived, 120, "every event at the receiver", interval=5)
    finally:
        stop.set()
        watch.stop()
        conn.terminate(60)
    s = summary(expected, received_counts(rsyslog.raw_lines()))
    assert s["missing"] == 0 and s["duplicated"] == 0, s

    floors = window_floors(watch.samples, WINDOW)
    first, highest, last = growth(floors, WARMUP)
    _figure(
        variant,
        profile=PROFILE,
        minutes=MINUTES,
        events=s["expected"],
        rss_floor_after_warmup_kib=first,
        rss_floor_highest_kib=highest,
        rss_floor_last_kib=last,
        rss_growth_kib=last - first,
        floors_mb="/".join(f"{v / 1024:.1f}" for _, v in floors),
    )
    inner = conn.inner_samples()
    sqlite_peak = max(r[2] for r in inner)
    if variant == "traced":
        traced = window_floors([(r[0], r[1]) for r in inner], WINDOW)
        tfirst, thighest, tlast = growth(traced, WARMUP)
        _figure(
            "traced_python",
            traced_floor_after_warmup_kib=tfirst // 1024,
            traced_floor_highest_kib=thighest // 1024,
            traced_floor_last_kib=tlast // 1024,
            traced_growth_kib=(tlast - tfirst) // 1024,
            sqlite_peak_kib=sqlite_peak // 1024,
        )
        if out_dir and len(snapshots) >= 2:
            _top_growth(Path(out_dir), snapshots)
    # tracemalloc's snapshots are the measurement's own cost: each one copies every trace, and what it
    # frees leaves the heap fragmented (RSS stepped up by up to ~1 MB at each one while traced Python
    # memory stayed level), so with snapshots after warm-up only traced Python memory is bounded
    if not (variant == "traced" and any(t >= WARMUP for t in snapshots)):
        assert last - first < RSS_BOUND_KIB, f"RSS floors per minute (KiB): {floors}"
    assert sqlite_peak < SQLITE_BOUND, f"SQLite's memory reached {sqlite_peak} bytes"
    if variant == "traced":
        assert (tlast - tfirst) // 1024 < TRACED_BOUND_KIB, f"traced floors per minute: {traced}"
    if variant == "metrics":
        assert scrapes[0] >= duration * 0.9 - 5 and scrapes[1] == 0, scrapes
    if variant == "sighup":
        assert reloads == 100
        conn.wait_log("reload_done", count=100, timeout=5)


def _top_growth(out_dir: Path, taken: list[float]) -> None:
    """Print the largest growths of traced memory from the first snapshot after warm-up to the last."""
    first = next((i for i, t in enumerate(taken) if t >= WARMUP), 0) + 1
    dumped = sorted(int(p.stem.split("-")[1]) for p in out_dir.glob("snap-*.trace"))
    if not dumped or dumped[-1] <= first:
        return
    a = tracemalloc.Snapshot.load(str(out_dir / f"snap-{first}.trace"))
    b = tracemalloc.Snapshot.load(str(out_dir / f"snap-{dumped[-1]}.trace"))
    for stat in b.compare_to(a, "traceback")[:8]:
        where = " <- ".join(str(f) for f in reversed(stat.traceback))
        print(
            f"FIGURE memory_soak traced_growth size_kib={stat.size_diff // 1024} count={stat.count_diff} at={where}"
        )
