"""Shared fixtures: the real rsyslog receiver lives in tests/support/rsyslog.py.

A test that needs the real receiver (fixture `rsyslog` / `rsyslog_factory` / `relp_receiver`, or marker
`needs_rsyslog`) carries the `needs_rsyslog` marker, so that `make test-fast` can leave it out
(`-m 'not needs_rsyslog'`). Such a test never skips silently: without rsyslogd a run that selects it stops
at collection with the command to install it, unless the user opted out with SIEMCONN_SKIP_RSYSLOG=1
(then those tests are skipped, and say why). A run that deselects them all needs no rsyslogd.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from support.rsyslog import (  # noqa: F401
    RSYSLOGD,
    relp_receiver,
    rsyslog,
    rsyslog_available,
    rsyslog_factory,
)

INSTALL_COMMAND = "sudo apt-get install -y rsyslog rsyslog-gnutls rsyslog-openssl rsyslog-relp"
_RECEIVER_FIXTURES = {"rsyslog", "rsyslog_factory", "relp_receiver"}
NEEDS_RSYSLOG = pytest.mark.needs_rsyslog


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_rsyslog: the test runs a real rsyslogd receiver")


def _needs_rsyslog(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & _RECEIVER_FIXTURES) or item.get_closest_marker("needs_rsyslog") is not None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """Marks the receiver tests before `-m` deselects, and checks for rsyslogd after: only the tests that
    will run need it."""
    for item in items:
        if _needs_rsyslog(item):
            item.add_marker(NEEDS_RSYSLOG)
    yield
    needing = [i for i in items if _needs_rsyslog(i)]
    if not needing or rsyslog_available():
        return
    if os.environ.get("SIEMCONN_SKIP_RSYSLOG", "") == "1":
        skip = pytest.mark.skip(reason=f"SIEMCONN_SKIP_RSYSLOG=1 and rsyslogd ({RSYSLOGD}) is not installed")
        for item in needing:
            item.add_marker(skip)
        return
    raise pytest.UsageError(
        f"{len(needing)} tests need the real rsyslogd receiver, and {RSYSLOGD} is not installed.\n"
        f"Install it with:\n\n    {INSTALL_COMMAND}\n\n"
        "(`make test` does this itself when run as root with apt-get), or run without those tests:\n\n"
        "    SIEMCONN_SKIP_RSYSLOG=1 make test\n"
    )


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
