"""siemconn.ops.malloc: the malloc setting of `siemconn run`."""

from __future__ import annotations

import subprocess
import sys

from siemconn.ops.malloc import ARENA_MAX, malloc_settings, tune_process


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
