"""Shared fixtures: the real rsyslog receiver lives in tests/support/rsyslog.py."""

from support.rsyslog import rsyslog, rsyslog_factory  # noqa: F401
