"""siemconn.queue.datadir: the data directory created 0700 (and tightened), the queue file 0600, one
process per queue (the lock), a foreign SQLite file refused, and a directory or file this process cannot
write reported with its path and the fix."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from siemconn.errors import QueueCorruptError, QueueLockedError
from siemconn.queue import DurableQueue


def events(ids: range | list[int], key: str = "audit", pad: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "key": key, "msg": "caf\u00e9 " + "x" * pad} for i in ids]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_foreign_sqlite_database_is_refused(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(data_dir / "queue.db")
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(QueueCorruptError, match="not a siemconn queue"):
        await DurableQueue.open(data_dir, ["a"])


async def test_second_instance_in_same_process_is_refused(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        with pytest.raises(QueueLockedError) as err:
            await DurableQueue.open(data_dir, ["a"])
        assert str(os.getpid()) in str(err.value)
        await q.commit_page("audit", events([1]), 2)  # the first one still works
    finally:
        await q.close()
    q2 = await DurableQueue.open(data_dir, ["a"])  # lock released on close
    await q2.close()


def test_data_dir_created_0700_and_tightened(tmp_path: Path) -> None:
    async def go(d: Path) -> None:
        q = await DurableQueue.open(d, ["a"])
        await q.close()

    new = tmp_path / "a" / "data"
    asyncio.run(go(new))
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir()
    os.chmod(wide, 0o755)
    asyncio.run(go(wide))
    assert stat.S_IMODE(wide.stat().st_mode) == 0o700
    assert stat.S_IMODE((wide / "queue.db").stat().st_mode) == 0o600


_OPEN_SNIPPET = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from siemconn.queue import DurableQueue
    async def main():
        q = await DurableQueue.open(Path(sys.argv[1]), ["a"])
        await q.close()
    try:
        asyncio.run(main())
    except Exception as exc:
        print(type(exc).__name__ + ": " + str(exc))
    else:
        print("OPENED")
    """
)


def _open_without_dac_override(data_dir: Path) -> str:
    """Open the queue in a subprocess that obeys file permission bits (root drops CAP_DAC_OVERRIDE)."""
    cmd = [sys.executable, "-c", _OPEN_SNIPPET, str(data_dir)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv: cannot make permission bits apply")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr


async def _create_queue(d: Path) -> None:
    q = await DurableQueue.open(d, ["a"])
    await q.commit_page("audit", events([1]), 2)
    await q.close()


def test_read_only_directory(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    asyncio.run(_create_queue(existing))
    os.chmod(existing, 0o500)
    for f in existing.iterdir():
        os.chmod(f, 0o400)
    try:
        out = _open_without_dac_override(existing)
    finally:
        os.chmod(existing, 0o700)
    assert out.startswith("QueueUnavailableError"), out
    assert str(existing) in out and "Fix:" in out


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o500)
    try:
        out = _open_without_dac_override(parent / "data")
    finally:
        os.chmod(parent, 0o700)
    assert out.startswith("QueueUnavailableError"), out
    assert str(parent / "data") in out


def test_read_only_database_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    asyncio.run(_create_queue(d))
    os.chmod(d / "queue.db", 0o400)
    try:
        out = _open_without_dac_override(d)
    finally:
        os.chmod(d / "queue.db", 0o600)
    assert out.startswith("QueueUnavailableError"), out
    assert "queue.db" in out
