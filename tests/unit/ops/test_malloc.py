"""siemconn.ops.malloc: the malloc setting of `siemconn run`, and the periodic trim of the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from siemconn.ops.malloc import ARENA_MAX, Trimmer, malloc_settings, tune_process


def test_malloc_plan_on_linux_caps_the_arenas() -> None:
    assert malloc_settings({}, "linux") == {-8: ARENA_MAX}  # M_ARENA_MAX


def test_malloc_plan_respects_the_operators_own_glibc_settings() -> None:
    for name in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES"):
        assert malloc_settings({name: "4"}, "linux") == "left as is (set in the environment)"


def test_malloc_plan_can_be_turned_off_and_is_linux_only() -> None:
    assert malloc_settings({"SIEMCONN_TUNING": " OFF "}, "linux") == "left as is (SIEMCONN_TUNING=off)"
    assert malloc_settings({}, "darwin") == "left as is (not glibc on darwin)"
    assert tune_process({"SIEMCONN_TUNING": "off"}) == "left as is (SIEMCONN_TUNING=off)"


def test_tune_process_in_a_fresh_interpreter() -> None:
    # mallopt is process-wide: apply it in a child, not in pytest itself
    code = "from siemconn.ops.malloc import tune_process; print(tune_process({}))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stdout.lower()
    if sys.platform.startswith("linux") and ("glibc" in libc or "gnu libc" in libc):
        assert got.strip() == f"glibc arena_max={ARENA_MAX}"
    else:
        assert got.startswith("left as is")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trimmer_hands_free_heap_memory_back_once_due() -> None:
    """Holes left by freed page-sized buffers in the middle of the heap go back to the OS when the trim is
    due (issue 30: they kept the resident floor creeping), and not before."""
    now = [0.0]
    trimmer = Trimmer({}, "linux", every=60.0, clock=lambda: now[0])
    if not trimmer.enabled:
        pytest.skip("not glibc")
    # 64 KiB buffers come from the heap (under glibc's mmap threshold); every other one is kept, so the
    # freed ones are holes the heap cannot shrink past
    bufs = [bytes(64 * 1024) for _ in range(800)]
    kept = bufs[::2]
    del bufs
    before = _rss_kib()
    now[0] = 59.0
    assert not trimmer.due() and trimmer.trims == 0
    now[0] = 60.0
    assert trimmer.due() and trimmer.trims == 1
    after = _rss_kib()
    assert before - after > 10 * 1024, f"RSS {before} -> {after} KiB"
    assert not trimmer.due()  # the next one a minute later
    assert len(kept) == 400


def test_trimmer_trims_when_quiet_at_most_once_per_gap_and_resets_the_minute() -> None:
    """quiet() (the service's pulls have settled) trims unless the last trim was under `quiet_gap` s ago;
    any trim restarts the minute's wait, so a service that goes quiet every few seconds does not also
    trim on the minute."""
    now = [0.0]
    trimmer = Trimmer({}, "linux", every=60.0, quiet_gap=2.0, clock=lambda: now[0])
    if not trimmer.enabled:
        pytest.skip("not glibc")
    now[0] = 1.9
    assert not trimmer.quiet()
    now[0] = 2.0
    assert trimmer.quiet() and trimmer.trims == 1
    now[0] = 3.0
    assert not trimmer.quiet()
    now[0] = 61.0
    assert not trimmer.due()  # 59 s after the last trim
    now[0] = 62.0
    assert trimmer.due() and trimmer.trims == 2


def test_trimmer_is_off_with_tuning_off_or_off_linux() -> None:
    assert not Trimmer({"SIEMCONN_TUNING": "off"}, "linux").enabled
    assert not Trimmer({}, "darwin").due()
    assert not Trimmer({"SIEMCONN_TUNING": "off"}, "linux", quiet_gap=0.0).quiet()
