"""A real small file system for the full-disk tests: a tmpfs mounted for one test, and a filler that takes
every free byte of it, as another process (logs, a core dump) would."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MB = 1024 * 1024


@contextmanager
def small_tmpfs(mnt: Path, size: str = "10m") -> Iterator[Path]:
    """Mount a tmpfs of `size` at mnt for the block (root); skipped loudly where mounting is refused."""
    mnt.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(
            f"SKIPPED LOUDLY: needs to mount a {size} tmpfs (run the suite as root): "
            + (res.stderr.strip() or f"mount exited {res.returncode}")
        )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free(path: Path) -> int:
    return shutil.disk_usage(path).free


def fill(path: Path, name: str = "filler") -> Path:
    """Take every free byte of the file system holding `path` and keep it (the file stays)."""
    filler = path / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (64 * 1024, 4096, 512, 1):
            chunk = bytes(size)
            while True:
                try:
                    os.write(fd, chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert free(path) < 4096, free(path)
    return filler


class FreeSampler:
    """The lowest free space of a file system, sampled every `every` seconds in a thread."""

    def __init__(self, path: Path, every: float = 0.01) -> None:
        self.path = path
        self.every = every
        self.lowest = free(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="free-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.lowest = min(self.lowest, free(self.path))

    def __enter__(self) -> FreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
