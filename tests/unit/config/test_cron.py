"""siemconn.config.cron: the scheduler's cron expressions, what aiocron runs and what it refuses, with errors
that name the field and nicknames accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.configs import ENV, problems, reference, write_config

from siemconn.config import (
    load_settings,
)


@pytest.mark.parametrize("spec", ["* * * *", "61 * * * *", "* * * * * * *", "", "@reboot", "@every", 5])
def test_bad_cron(tmp_path: Path, spec: Any) -> None:
    doc = reference()
    doc["configuration"]["scheduler"]["audit"] = spec
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith("configuration.scheduler.audit")
    assert "is not a cron expression" in msgs[0]


@pytest.mark.parametrize("spec", ["*/5 * * * *", "0 0 * * 1-5", "*/10 * * * * *"])
def test_good_cron_including_seconds_field(tmp_path: Path, spec: str) -> None:
    doc = reference()
    doc["configuration"]["scheduler"]["detections"] = spec
    assert load_settings(write_config(tmp_path, doc), ENV).configuration.scheduler.detections == spec


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("70 * * * * *", "field 1 (seconds) '70' is out of range"),
        ("* * * * * 70", "the seconds field comes FIRST"),
        ("* * * * * */10", "did you mean '*/10 * * * * *'?"),
        ("61 * * * *", "field 1 (minute) '61'"),
        ("@reboot", "pull_at_startup"),
        ("@every 5m", "unknown nickname"),
    ],
)
def test_cron_errors_name_the_field(tmp_path: Path, spec: str, expect: str) -> None:
    doc = reference()
    doc["configuration"]["scheduler"]["audit"] = spec
    (msg,) = problems(tmp_path, doc)
    assert expect in msg, msg


@pytest.mark.parametrize(
    ("nick", "spec"), [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@WEEKLY", "0 0 * * 0")]
)
def test_cron_nicknames_are_accepted(tmp_path: Path, nick: str, spec: str) -> None:
    doc = reference()
    doc["configuration"]["scheduler"]["audit"] = nick
    assert load_settings(write_config(tmp_path, doc), ENV).configuration.scheduler.audit == spec
