"""Shared fixtures: the real rsyslog receiver lives in tests/support/rsyslog.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from support.rsyslog import rsyslog, rsyslog_factory  # noqa: F401


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Commands under test configure logging globally (as a process would); undo it after each test."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _private_runtime_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service run in-process writes its runtime record (siemconn.ops.runtime) here, not in /run."""
    path: Path = tmp_path_factory.mktemp("run")
    monkeypatch.setenv("SIEMCONN_RUNTIME_DIR", str(path))
