"""siemconn.config.model: the `configuration` object's options and cross-field rules (unique server names,
a UDP rate that fits a batch, detection_size with v3.5), and the scheduler's stream switches: off/null,
opt-in health and lockdown, at least one stream on, and a server's streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.configs import ENV, REFERENCE, problems, reference, write_config

from siemconn.config import (
    STREAMS,
    Configuration,
    load_configuration,
    load_settings,
)
from siemconn.errors import ConfigError


def scheduled(tmp_path: Path, scheduler: dict[str, Any] | None = None, **server: Any) -> Configuration:
    """The loaded `configuration` of the reference config with `scheduler` and its server's `server` changes."""
    return load_settings(write_config(tmp_path, reference(scheduler, **server)), ENV).configuration


def test_reference_scheduler_has_the_three_streams_on_and_the_new_ones_off(tmp_path: Path) -> None:
    c = scheduled(tmp_path)
    assert c.scheduler.enabled == ("audit", "detections", "entity_scoring")
    assert c.scheduler.disabled == ("health", "lockdown")
    assert c.server[0].streams is None
    assert c.server_streams(c.server[0]) == ("audit", "detections", "entity_scoring")


@pytest.mark.parametrize("off", [None, "off", "OFF", " Off "])
def test_null_or_off_turns_a_stream_off(tmp_path: Path, off: Any) -> None:
    c = scheduled(tmp_path, {"audit": off, "detections": "* * * * *", "entity_scoring": "*/5 * * * *"})
    assert c.scheduler.audit is None
    assert c.scheduler.enabled == ("detections", "entity_scoring")
    assert "audit" in c.scheduler.disabled


def test_health_and_lockdown_are_opt_in(tmp_path: Path) -> None:
    sched = {"audit": None, "detections": None, "entity_scoring": None, "health": "*/5 * * * *"}
    c = scheduled(tmp_path, {**sched, "lockdown": "* * * * *"})
    assert c.scheduler.enabled == ("health", "lockdown")
    assert c.scheduler.schedule("lockdown") == "* * * * *"


def test_every_stream_off_is_a_clear_error(tmp_path: Path) -> None:
    msgs = problems(tmp_path, reference({"audit": None, "detections": "off", "entity_scoring": None}))
    assert msgs == [
        "configuration.scheduler: every stream is off; expected a cron expression for at least one of "
        + ", ".join(STREAMS)
    ]


def test_empty_string_is_still_not_a_cron_and_says_how_to_turn_off(tmp_path: Path) -> None:
    msgs = problems(
        tmp_path, reference({"audit": "", "detections": "* * * * *", "entity_scoring": "* * * * *"})
    )
    assert len(msgs) == 1 and msgs[0].startswith('configuration.scheduler.audit: "" is not a cron expression')
    assert 'null / "off" to turn the stream off' in msgs[0]


def test_the_reference_keys_stay_required(tmp_path: Path) -> None:
    msgs = problems(tmp_path, reference({"detections": "* * * * *", "entity_scoring": "* * * * *"}))
    assert msgs == ["configuration.scheduler.audit is missing; expected this field"]


def test_server_streams(tmp_path: Path) -> None:
    c = scheduled(tmp_path, streams=["entity_scoring", "detections"])
    assert c.server[0].streams == ("entity_scoring", "detections")
    assert c.server[0].takes("detections") and not c.server[0].takes("audit")
    assert c.server_streams(c.server[0]) == ("detections", "entity_scoring")


def test_a_server_may_list_a_stream_that_is_off(tmp_path: Path) -> None:
    # queued events of a stream turned off still reach the servers that list it (the service warns)
    c = scheduled(
        tmp_path, {"audit": None, "detections": "* * * * *", "entity_scoring": None}, streams=["audit"]
    )
    assert c.server[0].streams == ("audit",) and c.server_streams(c.server[0]) == ()


def test_a_udp_rate_too_slow_for_a_batch_is_refused(tmp_path: Path) -> None:
    doc = reference(server_protocol="UDP", udp_rate_limit=10)
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and "udp_rate_limit 10 sends one batch of 500 events in 50 s" in msgs[0], msgs
    doc["configuration"]["batch_size"] = 100
    assert load_settings(write_config(tmp_path, doc), ENV).servers[0].udp_rate_limit == 10


def test_names_must_be_unique(tmp_path: Path) -> None:
    doc = reference()
    doc["configuration"]["server"].append(dict(doc["configuration"]["server"][0]))
    msgs = problems(tmp_path, doc)
    assert any("'server1' is used twice" in m for m in msgs)


def test_servers_required_nonempty(tmp_path: Path) -> None:
    doc = reference()
    doc["configuration"]["server"] = []
    assert problems(tmp_path, doc) == ["configuration.server: [] is empty; expected at least one entry"]


@pytest.mark.parametrize("value", [-1, 0, 5])
def test_retry_count_ints(tmp_path: Path, value: int) -> None:
    doc = reference()
    doc["configuration"]["retry_count"] = value
    assert load_settings(write_config(tmp_path, doc), ENV).configuration.retry_count == value


@pytest.mark.parametrize("value", ["2", 2.5, None, True])
def test_retry_count_bad(tmp_path: Path, value: Any) -> None:
    doc = reference()
    doc["configuration"]["retry_count"] = value
    msgs = problems(tmp_path, doc)
    assert msgs and msgs[0].startswith("configuration.retry_count")


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("api_version", "v2.5", "expected one of"),
        ("detection_size", "huge", "expected one of"),
        ("page_size", 5000, "expected an integer 1-1000"),
        ("initial_lookback_hours", -1, "is not a lookback"),
        ("timezone", "Mars/Base", "is not a time zone"),
        ("metrics_address", "9108", "is not an address"),
        ("include_triaged", "yes", "is not a boolean"),
        ("min_free_disk_mb", -5, "is not a size"),
        ("unknown_option", 1, "is not a known option"),
    ],
)
def test_top_level_options(tmp_path: Path, key: str, value: Any, expect: str) -> None:
    doc = reference()
    doc["configuration"][key] = value
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith(f"configuration.{key}") and expect in msgs[0]


@pytest.mark.parametrize("value", ["x" * 300, "Europe", "Etc", "UTC/..", "\x00"])
def test_timezone_the_os_refuses_is_a_config_error(tmp_path: Path, value: str) -> None:
    """A name the file system refuses (too long, a directory of zones) is reported like any unknown zone."""
    doc = reference()
    doc["configuration"]["timezone"] = value
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith("configuration.timezone") and "is not a time zone" in msgs[0]
    with pytest.raises(ConfigError) as ei:
        load_configuration(write_config(tmp_path, doc))
    assert "configuration.timezone" in str(ei.value) and "is not a time zone" in str(ei.value)


def test_max_response_mb(tmp_path: Path) -> None:
    doc = {"configuration": {**REFERENCE["configuration"], "max_response_mb": 0}}
    assert "max_response_mb" in problems(tmp_path, doc)[0]
    assert load_configuration(write_config(tmp_path, REFERENCE)).max_response_mb == 8


def test_v35_and_detection_size(tmp_path: Path) -> None:
    doc = reference()
    doc["configuration"]["api_version"] = "v3.5"
    c = load_settings(write_config(tmp_path, doc), ENV).configuration
    assert (c.api_version, c.detection_size) == ("v3.5", None)  # size not sent: the API's default
    doc["configuration"]["detection_size"] = "detailed"
    assert load_settings(write_config(tmp_path, doc), ENV).configuration.detection_size == "detailed"


@pytest.mark.parametrize("version", [None, "v3.3", "v3.4"])
def test_detection_size_needs_v35(tmp_path: Path, version: str | None) -> None:
    """size is a v3.5 parameter: asking for it on an older version is an error naming both options."""
    doc = reference()
    doc["configuration"]["detection_size"] = "detailed"
    if version is not None:
        doc["configuration"]["api_version"] = version
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1
    assert "detection_size 'detailed'" in msgs[0] and f"api_version is '{version or 'v3.3'}'" in msgs[0]
    assert 'set "api_version": "v3.5" or remove detection_size' in msgs[0]
