"""The queue's invariant under SIGKILL: no event lost, duplicates at most one batch per destination per kill.

tests/support/queue_worker.py is a miniature connector (fetch -> commit -> read -> send -> ack) that can
SIGKILL itself between any two steps. After the kill it is restarted and runs to the end; then every
destination's output must hold every event, and duplicates are allowed only for a batch the destination
had already accepted (after_send: written, not yet acked).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[1] / "support" / "queue_worker.py"
KEYS = ("audit", "detections", "entity_scoring.host")
DESTS = ("a", "b")


def _worker(data_dir: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), "run", str(data_dir), str(out_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _delivered(out_dir: Path, dest: str) -> Counter[tuple[str, int]]:
    seen: Counter[tuple[str, int]] = Counter()
    path = out_dir / f"{dest}.out"
    if not path.exists():
        return seen
    for line in path.read_text(encoding="ascii").splitlines():
        event = json.loads(line)
        seen[(event["key"], event["id"])] += 1
    return seen


def _check(out_dir: Path, total: int, max_dups: int) -> dict[str, int]:
    expected = {(k, i) for k in KEYS for i in range(1, total + 1)}
    dups: dict[str, int] = {}
    for dest in DESTS:
        seen = _delivered(out_dir, dest)
        missing = expected - set(seen)
        assert not missing, f"{dest}: {len(missing)} events lost, e.g. {sorted(missing)[:5]}"
        assert set(seen) == expected, f"{dest}: unexpected events {sorted(set(seen) - expected)[:5]}"
        dups[dest] = sum(seen.values()) - len(seen)
        assert dups[dest] <= max_dups, f"{dest}: {dups[dest]} duplicates, allowed {max_dups}"
    return dups


@pytest.mark.parametrize("step", ["after_fetch", "after_commit", "after_read", "after_send"])
@pytest.mark.parametrize("nth", [1, 5])
def test_kill_between_steps_then_restart_loses_nothing(tmp_path: Path, step: str, nth: int) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    total, batch = 40, 5
    killed = _worker(
        data, out, "--total", str(total), "--batch", str(batch), "--kill-at", step, "--kill-nth", str(nth)
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = _worker(data, out, "--total", str(total), "--batch", str(batch))
    assert done.returncode == 0, done.stderr
    dups = _check(out, total, max_dups=batch)
    if step == "after_send":
        # the batch written before the kill was not acked: it is sent again, once, to that destination only
        assert min(dups.values()) == 0
        assert 1 <= max(dups.values()) <= batch
    else:
        # re-fetched overlap was deduped and unacked-but-unsent batches are not duplicates
        assert dups == {"a": 0, "b": 0}


def test_chain_of_kills_at_every_step(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    total, batch = 60, 4
    plan = [("after_commit", 3), ("after_send", 2), ("after_fetch", 4), ("after_read", 3), ("after_send", 6)]
    for step, nth in plan:
        r = _worker(
            data, out, "--total", str(total), "--batch", str(batch), "--kill-at", step, "--kill-nth", str(nth)
        )
        assert r.returncode == -signal.SIGKILL, (step, r.stderr)
    done = _worker(data, out, "--total", str(total), "--batch", str(batch))
    assert done.returncode == 0, done.stderr
    sends_killed = sum(1 for s, _ in plan if s == "after_send")
    dups = _check(out, total, max_dups=sends_killed * batch)
    assert sum(dups.values()) <= sends_killed * batch


def test_external_sigkill_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL from outside at arbitrary points (inside SQLite commits too), several times, then finish."""
    data, out = tmp_path / "data", tmp_path / "out"
    total, batch = 1500, 6
    args = ["--total", str(total), "--page", "9", "--batch", str(batch), "--overlap", "3"]
    rng = random.Random(20240501)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "run", str(data), str(out), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # wait until the worker has started delivering, then kill it at a random moment
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "a.out").exists() and (out / "a.out").stat().st_size > 0:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        rc = proc.wait(timeout=30)
        assert rc in (0, -signal.SIGKILL), proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    done = _worker(data, out, *args)
    assert done.returncode == 0, done.stderr
    assert kills >= 1, "the worker always finished before it could be killed; make the run longer"
    _check(out, total, max_dups=kills * batch)
