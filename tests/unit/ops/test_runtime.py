"""The runtime record by which `status` and `replay` find the running service's queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from siemconn.ops.runtime import find_record, record_key, remove_record, write_record


def test_a_record_written_under_systemds_runtime_directory_is_found_by_config_path(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "acme" / "config.json"
    run = tmp_path / "run"
    path = write_record(config, tmp_path / "data", environ={"RUNTIME_DIRECTORY": str(run / "acme")})
    assert path == run / "acme" / record_key(config)
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # readable by an operator; holds no secret
    found = find_record(config, environ={"SIEMCONN_RUNTIME_DIR": str(run)})  # one level below is searched
    assert found is not None and found.data_dir == (tmp_path / "data").absolute()
    assert find_record(tmp_path / "other.json", environ={"SIEMCONN_RUNTIME_DIR": str(run)}) is None
    remove_record(path)
    assert not path.exists()


def test_a_stale_record_is_ignored(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    path = write_record(config, tmp_path / "data", environ={"SIEMCONN_RUNTIME_DIR": str(tmp_path)})
    assert path is not None
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    record = json.loads(path.read_text())
    record["pid"] = int(dead.stdout)  # a process that has exited
    path.write_text(json.dumps(record))
    assert find_record(config, environ={"SIEMCONN_RUNTIME_DIR": str(tmp_path)}) is None
