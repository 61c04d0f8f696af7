"""Shared fixtures: the real rsyslog receiver lives in tests/support/rsyslog.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from support.rsyslog import relp_receiver, rsyslog, rsyslog_factory  # noqa: F401


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Commands under test configure logging globally (as a process would); undo it after each test."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    structlog.reset_defaults()
